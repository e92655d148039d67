//! End-to-end tests of Voice Agent: `tests/e2e/` starts the simulator, the API and the worker
//! as real processes against a real Temporal dev server and MongoDB-wire server (both started
//! by `scripts/test.sh`), and drives them through gRPC and Twilio-shaped webhooks.
