import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';

export interface DayRow {
  day: string;
  delivered: number;
  other: number;
  failed: number;
  calls: number;
}

/** Messages by outcome (stacked) and calls, per day. The same figures are in a table below. */
export default function DayChart({ rows }: { rows: DayRow[] }) {
  return (
    <ResponsiveContainer width="100%" height={220}>
      <BarChart data={rows} accessibilityLayer={false} margin={{ top: 8, right: 8, bottom: 0, left: -16 }}>
        <CartesianGrid strokeDasharray="3 3" vertical={false} />
        <XAxis dataKey="day" fontSize={12} />
        <YAxis allowDecimals={false} fontSize={12} />
        <Tooltip />
        <Legend />
        <Bar dataKey="delivered" stackId="m" fill="#047857" name="delivered" />
        <Bar dataKey="other" stackId="m" fill="#93c5fd" name="sent, not yet delivered" />
        <Bar dataKey="failed" stackId="m" fill="#b91c1c" name="failed" />
        <Bar dataKey="calls" fill="#6b7280" name="calls" />
      </BarChart>
    </ResponsiveContainer>
  );
}
