import type { Progress } from '../lib/progress';
import { eta, summarize } from '../lib/progress';

export function ProgressBar({ progress }: { progress: Progress }) {
  const s = summarize(progress);
  const finish = eta(progress.expected_finish);
  return (
    <div className="progress">
      <div
        className="bar"
        role="progressbar"
        aria-label="Items done"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={s.percent}
      >
        <span style={{ width: `${s.percent}%` }} />
      </div>
      <p className="muted small">
        {s.done.toLocaleString()} of {s.total.toLocaleString()} done ({s.percent}%)
        {s.failed > 0 && <> · {s.failed.toLocaleString()} failed</>}
        {progress.rate_per_second > 0 && <> · {progress.rate_per_second.toFixed(1)}/s</>}
        {finish && <> · finishes {finish}</>}
        {progress.paused && <> · paused</>}
      </p>
    </div>
  );
}
