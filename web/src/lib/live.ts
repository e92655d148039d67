// Live updates: the api's Server-Sent Events refresh the queries they concern, so pages change
// within a second of the data without polling (the slow intervals left are a fallback).
import { useEffect, useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import type { Progress } from './progress';

/** Query keys refreshed by each kind of change `/api/events` reports. */
export const REFRESHES: Record<string, string[][]> = {
  conversations: [['conversations'], ['conversation']],
  messages: [['conversations'], ['conversation']],
  calls: [['calls'], ['call']],
  // A message's delivery status or a call's outcome moved.
  statuses: [['conversation'], ['call'], ['contact-history']],
};

/** Keeps one `/api/events` stream open for the app; EventSource reconnects by itself. */
export function useLiveEvents() {
  const client = useQueryClient();
  useEffect(() => {
    if (typeof EventSource === 'undefined') return;
    const source = new EventSource('/api/events');
    const listeners = Object.entries(REFRESHES).map(([kind, keys]) => {
      const listener = () => keys.forEach((queryKey) => client.invalidateQueries({ queryKey }));
      source.addEventListener(kind, listener);
      return [kind, listener] as const;
    });
    return () => {
      listeners.forEach(([kind, l]) => source.removeEventListener(kind, l));
      source.close();
    };
  }, [client]);
}

export function ended(status: string | undefined): boolean {
  return status === 'completed' || status === 'cancelled';
}

export interface LiveProgress {
  /** The latest streamed progress; `null` until the first event. */
  progress: Progress | null;
  /** The stream is down for good (refused, or the api went away): poll instead. */
  lost: boolean;
}

/** A campaign's progress as the api streams it. */
export function useLiveProgress(id: string, enabled: boolean): LiveProgress {
  const [progress, setProgress] = useState<Progress | null>(null);
  const [lost, setLost] = useState(false);
  useEffect(() => {
    if (!enabled || typeof EventSource === 'undefined') return;
    setLost(false);
    const source = new EventSource(`/api/campaigns/${encodeURIComponent(id)}/progress/stream`);
    source.addEventListener('progress', (e) => {
      const p = JSON.parse((e as MessageEvent<string>).data) as Progress;
      setProgress(p);
      setLost(false);
      // The api ends the stream after the campaign has ended; do not reconnect to it.
      if (ended(p.status)) source.close();
    });
    // EventSource retries dropped connections itself, but gives up on a refused one (503).
    source.onerror = () => setLost(source.readyState === EventSource.CLOSED);
    return () => source.close();
  }, [id, enabled]);
  return { progress, lost };
}
