// Speech for the AI chat's voice mode: the reply's tokens cut into speakable pieces as they
// stream, a speaker that says them one after the other and knows how much was said when the
// person cuts in, and speech recognition (the browser's, or a test's fake).

/** The longest piece waited for before speaking at a word boundary instead of a sentence end. */
const MAX_PIECE = 120;

/**
 * Splits the text streamed so far into pieces ready to speak (ending at a sentence or clause
 * end, or at a word once the text is long) and the rest, still waiting for more tokens.
 */
export function takePieces(buffer: string): { pieces: string[]; rest: string } {
  const pieces: string[] = [];
  let rest = buffer;
  for (;;) {
    const m = /[.!?;:,](\s+)/.exec(rest);
    if (m) {
      const end = m.index + m[0].length;
      pieces.push(rest.slice(0, end).trim());
      rest = rest.slice(end);
      continue;
    }
    if (rest.length > MAX_PIECE) {
      const space = rest.lastIndexOf(' ', MAX_PIECE);
      const end = space > 0 ? space + 1 : MAX_PIECE;
      pieces.push(rest.slice(0, end).trim());
      rest = rest.slice(end);
      continue;
    }
    return { pieces: pieces.filter((p) => p.length > 0), rest };
  }
}

/** Something that says pieces of text aloud, one after the other. */
export interface Speaker {
  /** Queues a piece; `onDone` when it has been said (not when it is cancelled). */
  speak(piece: string, onDone: () => void, onProgress: (chars: number) => void): void;
  /** Stops at once and drops what is queued. */
  cancel(): void;
}

/** Recognised speech: each final result is a turn. */
export interface Recognizer {
  start(onText: (text: string) => void, onSpeechStart: () => void): void;
  stop(): void;
}

/** What a test puts on `window.__vaFakeSpeech` (before the page loads) to stand in for the
 * microphone and the loudspeaker, which headless browsers do not have. */
export interface FakeSpeech {
  /** Called with each piece the page asks to say; resolve it to say it was spoken. */
  speak(piece: string): Promise<void>;
  /** The page registers how recognised text reaches it. */
  listen(onText: (text: string) => void, onSpeechStart: () => void): void;
}

declare global {
  interface Window {
    __vaFakeSpeech?: FakeSpeech;
    SpeechRecognition?: new () => BrowserRecognition;
    webkitSpeechRecognition?: new () => BrowserRecognition;
  }
}

interface BrowserRecognition {
  continuous: boolean;
  interimResults: boolean;
  lang: string;
  onresult: ((e: { resultIndex: number; results: ArrayLike<ArrayLike<{ transcript: string }> & { isFinal: boolean }> }) => void) | null;
  onspeechstart: (() => void) | null;
  onend: (() => void) | null;
  start(): void;
  stop(): void;
}

function fakeSpeaker(fake: FakeSpeech): Speaker {
  let generation = 0;
  let queue = Promise.resolve();
  return {
    speak(piece, onDone, onProgress) {
      const mine = generation;
      queue = queue.then(async () => {
        if (mine !== generation) return;
        await fake.speak(piece);
        if (mine !== generation) return;
        onProgress(piece.length);
        onDone();
      });
    },
    cancel() {
      generation += 1;
      queue = Promise.resolve();
    },
  };
}

function browserSpeaker(lang: string): Speaker {
  return {
    speak(piece, onDone, onProgress) {
      const u = new SpeechSynthesisUtterance(piece);
      u.lang = lang;
      u.onboundary = (e) => onProgress(e.charIndex);
      u.onend = () => {
        onProgress(piece.length);
        onDone();
      };
      window.speechSynthesis.speak(u);
    },
    cancel() {
      window.speechSynthesis.cancel();
    },
  };
}

/** The page's speaker, or null when the browser cannot speak. */
export function makeSpeaker(lang = 'en-US'): Speaker | null {
  if (window.__vaFakeSpeech) return fakeSpeaker(window.__vaFakeSpeech);
  if ('speechSynthesis' in window) return browserSpeaker(lang);
  return null;
}

/** The page's speech recognition, or null when the browser has none (text mode only). */
export function makeRecognizer(lang = 'en-US'): Recognizer | null {
  const fake = window.__vaFakeSpeech;
  if (fake) {
    let on = false;
    return {
      start(onText, onSpeechStart) {
        on = true;
        fake.listen(
          (t) => on && onText(t),
          () => on && onSpeechStart(),
        );
      },
      stop() {
        on = false;
      },
    };
  }
  const Ctor = window.SpeechRecognition ?? window.webkitSpeechRecognition;
  if (!Ctor) return null;
  let r: BrowserRecognition | null = null;
  let wanted = false;
  return {
    start(onText, onSpeechStart) {
      wanted = true;
      r = new Ctor();
      r.continuous = true;
      r.interimResults = false;
      r.lang = lang;
      r.onresult = (e) => {
        for (let i = e.resultIndex; i < e.results.length; i++) {
          const result = e.results[i];
          const said = result?.[0]?.transcript.trim();
          if (result?.isFinal && said) onText(said);
        }
      };
      r.onspeechstart = onSpeechStart;
      // Recognition stops by itself after a while; keep listening while voice mode is on.
      r.onend = () => wanted && r?.start();
      r.start();
    },
    stop() {
      wanted = false;
      r?.stop();
      r = null;
    },
  };
}
