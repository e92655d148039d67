// Health check of mongo1 in compose.deploy.yaml, run by mongosh inside that container.
// First runs: initiate the three-member replica set, then create the root user, both under
// MongoDB's localhost exception (no user exists yet). Later runs: sign in and exit 0 once this
// member is primary or secondary. Any other state exits 1 (not healthy yet).
const password = process.env.MONGO_ROOT_PASSWORD;
const admin = db.getSiblingDB("admin");
const members = [
  { _id: 0, host: "mongo1:27017", priority: 2 },
  { _id: 1, host: "mongo2:27017", priority: 1 },
  { _id: 2, host: "mongo3:27017", priority: 1 },
];

function signedIn() {
  try {
    return admin.auth("root", password).ok === 1;
  } catch (e) {
    return false;
  }
}

if (!signedIn()) {
  let status;
  try {
    status = admin.runCommand({ replSetGetStatus: 1 });
  } catch (e) {
    status = { ok: 0, code: e.code };
  }
  if (status.code === 94 /* NotYetInitialized */) {
    admin.runCommand({ replSetInitiate: { _id: "rs0", members } });
    quit(1);
  }
  if (!db.hello().isWritablePrimary) {
    quit(1);
  }
  // Primary, and no user yet: the localhost exception allows this one user.
  admin.createUser({ user: "root", pwd: password, roles: [{ role: "root", db: "admin" }] });
  quit(signedIn() ? 0 : 1);
}
const hello = db.hello();
quit(hello.isWritablePrimary || hello.secondary ? 0 : 1);
