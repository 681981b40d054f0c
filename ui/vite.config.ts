// `make ui` (npm ci && npm run build): the built pages go into the Python package, so that
// `pip install` brings the UI and users need no Node toolchain.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../gateway/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 2500,
  },
});
