#!/usr/bin/env node
'use strict';
// Runs the TypeScript CLI through tsx (a dependency), so `npx agentkeys` works in the repository
// and after `npm install -g .` without a build step.
require('tsx/cjs/api').register();
const { main } = require('../cli/main.ts');
main(process.argv).then((code) => process.exit(code));
