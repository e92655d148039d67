// The AI Chat: talk with any agent profile through the same durable conversation workflow as
// the other channels (channel `web`), over the api's WebSocket (`/api/live/chat`). Replies
// stream as the model produces them; in voice mode the browser recognises what the person
// says, speaks the reply piece by piece, and lets the person cut in.
import { Fragment, useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import { useQuery } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router';
import { api, data } from '../api/client';
import { Empty, ErrorNote, Loading } from '../components/States';
import { makeRecognizer, makeSpeaker, takePieces, type Recognizer, type Speaker } from '../lib/speech';
import { useCan } from '../lib/role';
import { NotAllowed } from '../components/NotAllowed';

interface Line {
  speaker: 'person' | 'agent';
  text: string;
  interrupted?: boolean;
}

type ServerFrame =
  | { type: 'ready'; chat: string; conversation_id: string; profile: string; history: Line[]; open: boolean }
  | { type: 'token'; seq: number; text: string }
  | { type: 'reply'; seq: number; text: string; actions: string[]; open: boolean }
  | { type: 'settled'; turn_id: string; person: string; agent: string; interrupted: boolean }
  | { type: 'error'; message: string };

type Phase = 'connecting' | 'idle' | 'listening' | 'thinking' | 'speaking' | 'closed';

const PHASE_TEXT: Record<Phase, string> = {
  connecting: 'Connecting…',
  idle: 'Ready',
  listening: 'Listening…',
  thinking: 'Thinking…',
  speaking: 'Speaking…',
  closed: 'Disconnected',
};

/** A turn not yet settled: what the person said and the reply so far. */
interface Current {
  person: string;
  reply: string;
  complete: boolean;
}

/** What the speaker has said of the current reply, for an interruption. */
interface Spoken {
  done: string[];
  partial: string;
  queued: number;
  buffer: string;
}

/** `turns` with its last element replaced by `f` of it (a frame for the turn in progress). */
function updateLast(turns: Current[], f: (c: Current) => Current): Current[] {
  const last = turns[turns.length - 1];
  return last ? [...turns.slice(0, -1), f(last)] : turns;
}

function socketUrl(profile: string, chat: string | null): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const q = new URLSearchParams({ profile });
  if (chat) q.set('chat', chat);
  return `${scheme}://${window.location.host}/api/live/chat?${q}`;
}

export default function Chat() {
  // The chat's socket starts and feeds conversations: a manager's role.
  const canManage = useCan('manager');
  if (!canManage) return <NotAllowed title="AI Chat" />;
  return <ChatPage />;
}

function ChatPage() {
  const [params, setParams] = useSearchParams();
  const profiles = useQuery({
    queryKey: ['live-profiles'],
    queryFn: () => data(api.GET('/api/live/profiles')),
  });
  const profile = params.get('profile') ?? profiles.data?.[0]?.name ?? '';
  const chat = params.get('chat');

  const [lines, setLines] = useState<Line[]>([]);
  // Turns the api has not yet called durable, oldest first; the last is the one in progress.
  // `settled` frames come in the order of the prompts, and one may arrive after the next
  // prompt's first tokens.
  const [unsettled, setUnsettled] = useState<Current[]>([]);
  const [phase, setPhase] = useState<Phase>('connecting');
  const [open, setOpen] = useState(true);
  const [note, setNote] = useState<string | null>(null);
  const [conversationId, setConversationId] = useState<string | null>(null);
  const [text, setText] = useState('');
  const [voice, setVoice] = useState(false);

  const socket = useRef<WebSocket | null>(null);
  const speaker = useRef<Speaker | null>(null);
  const recognizer = useRef<Recognizer | null>(null);
  const spoken = useRef<Spoken>({ done: [], partial: '', queued: 0, buffer: '' });
  const voiceRef = useRef(false);
  const completeRef = useRef(false);
  // The number of the latest prompt, and of a reply the person cut off: the api's frames sent
  // before it read the cut or the next prompt still arrive, and must not be shown or spoken
  // as part of the next reply.
  const seqRef = useRef(0);
  const cutRef = useRef(0);
  const [canListen] = useState(() => makeRecognizer() !== null);
  // The chat to reconnect to (the address may lag behind).
  const chatRef = useRef<string | null>(chat);

  const send = useCallback((frame: object) => {
    const s = socket.current;
    if (s && s.readyState === WebSocket.OPEN) s.send(JSON.stringify(frame));
  }, []);

  /** After each spoken piece: once the reply is complete and all of it said, say so. */
  const pieceSpoken = useCallback(() => {
    const sp = spoken.current;
    sp.queued -= 1;
    if (sp.queued === 0 && completeRef.current) {
      send({ type: 'spoken' });
      setPhase(voiceRef.current ? 'listening' : 'idle');
    }
  }, [send]);

  const speak = useCallback(
    (piece: string) => {
      const sp = spoken.current;
      const s = speaker.current;
      if (!s) return;
      sp.queued += 1;
      setPhase('speaking');
      s.speak(
        piece,
        () => {
          sp.done.push(piece);
          sp.partial = '';
          pieceSpoken();
        },
        (chars) => {
          sp.partial = piece.slice(0, chars);
        },
      );
    },
    [pieceSpoken],
  );

  /** The person cuts in: the agent stops, and only what was said counts. */
  const interrupt = useCallback(() => {
    const sp = spoken.current;
    speaker.current?.cancel();
    const heard = [...sp.done, sp.partial].filter(Boolean).join(' ');
    spoken.current = { done: [], partial: '', queued: 0, buffer: '' };
    cutRef.current = seqRef.current;
    send({ type: 'interrupt', heard });
    setPhase(voiceRef.current ? 'listening' : 'idle');
  }, [send]);

  const prompt = useCallback(
    (said: string) => {
      const t = said.trim();
      if (!t) return;
      spoken.current = { done: [], partial: '', queued: 0, buffer: '' };
      completeRef.current = false;
      setUnsettled((u) => [...u, { person: t, reply: '', complete: false }]);
      setPhase('thinking');
      seqRef.current += 1;
      send({ type: 'prompt', text: t, speaking: voiceRef.current && speaker.current !== null, seq: seqRef.current });
    },
    [send],
  );

  // One socket per profile and chat; a dropped socket reconnects to the same chat.
  useEffect(() => {
    if (!profile) return;
    let stopped = false;
    let retry: number | undefined;
    const connect = () => {
      setPhase('connecting');
      const ws = new WebSocket(socketUrl(profile, chatRef.current));
      socket.current = ws;
      ws.onmessage = (ev) => {
        // A socket this effect already closed (the profile or chat changed) may still deliver
        // a frame; it must not write its chat over the new one.
        if (stopped) return;
        const f = JSON.parse(String(ev.data)) as ServerFrame;
        switch (f.type) {
          case 'ready':
            setLines(f.history);
            setUnsettled([]);
            setOpen(f.open);
            setConversationId(f.conversation_id);
            setNote(null);
            setPhase(voiceRef.current ? 'listening' : 'idle');
            chatRef.current = f.chat;
            // The address names the chat, so a reload reconnects to it (compared with the
            // address itself: this handler's `params` may be stale).
            if (new URLSearchParams(window.location.search).get('chat') !== f.chat) {
              setParams({ profile: f.profile, chat: f.chat }, { replace: true });
            }
            break;
          case 'token':
            if (f.seq !== seqRef.current || f.seq === cutRef.current) break;
            setUnsettled((u) => updateLast(u, (c) => ({ ...c, reply: c.reply + f.text })));
            if (voiceRef.current && speaker.current) {
              const sp = spoken.current;
              const { pieces, rest } = takePieces(sp.buffer + f.text);
              sp.buffer = rest;
              pieces.forEach(speak);
            }
            break;
          case 'reply':
            if (f.seq !== seqRef.current || f.seq === cutRef.current) break;
            completeRef.current = true;
            setOpen(f.open);
            setUnsettled((u) => updateLast(u, (c) => ({ ...c, reply: f.text, complete: true })));
            if (voiceRef.current && speaker.current) {
              const sp = spoken.current;
              const rest = sp.buffer.trim();
              sp.buffer = '';
              if (rest) speak(rest);
              else if (sp.queued === 0) {
                send({ type: 'spoken' });
                setPhase('listening');
              }
            } else {
              setPhase('idle');
            }
            break;
          case 'settled':
            // The oldest turn is now durable, as the api kept it (cut to what was heard).
            setUnsettled((u) => u.slice(1));
            setLines((l) => [
              ...l,
              { speaker: 'person', text: f.person },
              ...(f.agent ? [{ speaker: 'agent' as const, text: f.agent, interrupted: f.interrupted }] : []),
            ]);
            break;
          case 'error':
            setNote(f.message);
            // A refused prompt gets no reply and never settles.
            setUnsettled((u) => {
              const last = u[u.length - 1];
              return last && !last.complete && !last.reply ? u.slice(0, -1) : u;
            });
            setPhase((p) => (p === 'thinking' ? (voiceRef.current ? 'listening' : 'idle') : p));
            break;
        }
      };
      ws.onclose = () => {
        if (stopped) return;
        setPhase('closed');
        // The api restarted or the network dropped: the same chat, its history from the api.
        retry = window.setTimeout(connect, 1_000);
      };
    };
    connect();
    return () => {
      stopped = true;
      window.clearTimeout(retry);
      socket.current?.close();
      socket.current = null;
    };
    // Reconnect only when the profile or the chat is changed by the person, not when `ready`
    // writes the new chat's id into the address.
  }, [profile, chat === null ? 'new' : 'existing']);

  // Voice mode: listen, send what is recognised, cut in when the person starts speaking.
  useEffect(() => {
    voiceRef.current = voice;
    if (!voice) {
      recognizer.current?.stop();
      speaker.current?.cancel();
      return;
    }
    speaker.current = makeSpeaker();
    const r = makeRecognizer();
    recognizer.current = r;
    if (!r) return;
    r.start(
      (heard) => prompt(heard),
      () => {
        if (spoken.current.queued > 0) interrupt();
      },
    );
    setPhase('listening');
    return () => r.stop();
  }, [voice, prompt, interrupt]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    prompt(text);
    setText('');
  };

  const newChat = () => {
    chatRef.current = null;
    setParams({ profile });
  };

  if (profiles.isPending) return <Loading />;
  if (profiles.error) return <ErrorNote error={profiles.error} retry={() => profiles.refetch()} />;

  return (
    <section>
      <div className="title-row">
        <h1>AI Chat</h1>
        <p className="muted" role="status" aria-live="polite" data-phase={phase}>
          {PHASE_TEXT[phase]}
        </p>
      </div>
      <div className="actions">
        <label>
          Agent profile{' '}
          <select value={profile} onChange={(e) => {
              chatRef.current = null;
              setParams({ profile: e.target.value });
            }}>
            {profiles.data.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <button type="button" className="secondary" onClick={newChat}>
          New chat
        </button>
        <label className="inline" title={canListen ? '' : 'This browser has no speech recognition: text only'}>
          <input type="checkbox" checked={voice} disabled={!canListen} onChange={(e) => setVoice(e.target.checked)} /> Voice
        </label>
        {conversationId && <Link to={`/conversations/${conversationId}`}>This conversation</Link>}
      </div>
      <div className="panel thread" aria-label="Chat">
        {lines.length === 0 && unsettled.length === 0 ? (
          <Empty>Say hello to start.</Empty>
        ) : (
          <ol className="plain">
            {lines.map((l, i) => (
              <li key={i} className={`msg ${l.speaker === 'person' ? 'inbound' : 'outbound'}`}>
                <p className="bubble">
                  {l.text}
                  {l.interrupted && <span className="muted small"> (interrupted)</span>}
                </p>
              </li>
            ))}
            {unsettled.map((t, i) => (
              <Fragment key={`unsettled-${lines.length + 2 * i}`}>
                <li className="msg inbound">
                  <p className="bubble">{t.person}</p>
                </li>
                <li className="msg outbound" aria-live="polite" aria-busy={!t.complete}>
                  <p className="bubble" data-testid="streaming-reply">
                    {t.reply || '…'}
                  </p>
                </li>
              </Fragment>
            ))}
          </ol>
        )}
      </div>
      {note && <ErrorNote error={new Error(note)} />}
      <form className="actions" onSubmit={submit} aria-label="Chat input">
        <label className="grow">
          Message
          <input
            value={text}
            maxLength={2000}
            disabled={!open || phase === 'connecting' || phase === 'closed'}
            onChange={(e) => setText(e.target.value)}
          />
        </label>
        <button type="submit" disabled={!text.trim() || !open || phase === 'connecting' || phase === 'closed'}>
          Send
        </button>
        {phase === 'speaking' && (
          <button type="button" className="secondary" onClick={interrupt}>
            Interrupt
          </button>
        )}
      </form>
      {!open && <p className="muted">The agent has ended this chat or handed it to a person.</p>}
    </section>
  );
}
