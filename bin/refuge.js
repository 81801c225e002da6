#!/usr/bin/env node
// Entry point of the `refuge` command: runs the compiled CLI (npm run build produces dist/).
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('refuge: not built yet; run scripts/setup.sh (or npm run build) first');
    process.exit(1);
  }
  throw err;
});
