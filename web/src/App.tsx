import { lazy, Suspense } from 'react';
import { createBrowserRouter, NavLink, Outlet, useRouteError } from 'react-router';
import { Loading, ErrorNote } from './components/States';
import { useLiveEvents } from './lib/live';
import { AuthGate } from './components/AuthGate';
import type { Me } from './lib/auth';
import { RoleContext } from './lib/role';

const Dashboard = lazy(() => import('./pages/Dashboard'));
const ContactLists = lazy(() => import('./pages/ContactLists'));
const ContactList = lazy(() => import('./pages/ContactList'));
const Campaigns = lazy(() => import('./pages/Campaigns'));
const CampaignNew = lazy(() => import('./pages/CampaignNew'));
const Campaign = lazy(() => import('./pages/Campaign'));
const Conversations = lazy(() => import('./pages/Conversations'));
const Conversation = lazy(() => import('./pages/Conversation'));
const Calls = lazy(() => import('./pages/Calls'));
const Call = lazy(() => import('./pages/Call'));
const Settings = lazy(() => import('./pages/Settings'));
const Profile = lazy(() => import('./pages/Profile'));
const Contact = lazy(() => import('./pages/Contact'));
const Chat = lazy(() => import('./pages/Chat'));

const NAV = [
  ['/', 'Dashboard'],
  ['/campaigns', 'Campaigns'],
  ['/lists', 'Contact lists'],
  ['/conversations', 'Conversations'],
  ['/calls', 'Calls'],
  ['/settings', 'Settings'],
  ['/chat', 'AI Chat'],
] as const;

function Layout() {
  return <AuthGate>{(me, signOut) => <SignedIn me={me} signOut={signOut} />}</AuthGate>;
}

function SignedIn({ me, signOut }: { me: Me; signOut: () => void }) {
  useLiveEvents();
  return (
    <RoleContext.Provider value={me.role}>
      <div className="shell">
        <a className="skip" href="#main">
          Skip to content
        </a>
        <header className="top">
          <span className="brand">Voice Agent</span>
          <nav aria-label="Main">
            {NAV.map(([to, label]) => (
              <NavLink key={to} to={to} end={to === '/'}>
                {label}
              </NavLink>
            ))}
          </nav>
          <a className="api-docs" href="/api/docs">
            API
          </a>
          <span className="who" title={me.role}>
            {me.name} ({me.role})
          </span>
          <button type="button" className="link light" onClick={signOut}>
            Sign out
          </button>
        </header>
        <main id="main" tabIndex={-1}>
          <Suspense fallback={<Loading />}>
            <Outlet />
          </Suspense>
        </main>
      </div>
    </RoleContext.Provider>
  );
}

function RouteError() {
  const e = useRouteError();
  return <ErrorNote error={e instanceof Error ? e : new Error('This page does not exist.')} />;
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>There is no page here.</p>
    </section>
  );
}

export const router = createBrowserRouter([
  {
    element: <Layout />,
    errorElement: <RouteError />,
    children: [
      { path: '/', element: <Dashboard /> },
      { path: '/lists', element: <ContactLists /> },
      { path: '/lists/:id', element: <ContactList /> },
      { path: '/lists/:id/contacts/:contactId', element: <Contact /> },
      { path: '/campaigns', element: <Campaigns /> },
      { path: '/campaigns/new', element: <CampaignNew /> },
      { path: '/campaigns/:id', element: <Campaign /> },
      { path: '/conversations', element: <Conversations /> },
      { path: '/conversations/:id', element: <Conversation /> },
      { path: '/calls', element: <Calls /> },
      { path: '/calls/:id', element: <Call /> },
      { path: '/settings', element: <Settings /> },
      { path: '/settings/profiles/:name', element: <Profile /> },
      { path: '/chat', element: <Chat /> },
      { path: '*', element: <NotFound /> },
    ],
  },
]);
