import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The api serves the build (web/dist); `npm run dev` proxies the API to a running api.
export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', sourcemap: false, chunkSizeWarningLimit: 400 },
  server: {
    proxy: { '/api': process.env.VA_API_URL ?? 'http://127.0.0.1:8080' },
  },
  test: { environment: 'happy-dom', include: ['src/**/*.test.{ts,tsx}'] },
});
