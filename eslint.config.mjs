// @ts-check
import tseslint from 'typescript-eslint';

/**
 * Imports point down only: scripts/test/bench → worker/api → activities → workflows (their
 * definitions) / services → db / adapters → lib. Each layer lists the top-level folders it must not import.
 * `lib/` is pure (no I/O), `adapters/` holds key loading and outside clients, `db/` one module
 * per table (all SQL), `services/` the state changes the API and activities share (one
 * transaction each, its audit row included).
 */
const TOP = ['api', 'worker', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib', 'fixtures', 'scripts', 'test', 'bench', 'cli'];
const MAY_IMPORT = {
  lib: ['lib'],
  db: ['db', 'lib'],
  adapters: ['adapters', 'lib'],
  workflows: ['workflows', 'lib'],
  services: ['services', 'db', 'adapters', 'lib'],
  activities: ['activities', 'workflows', 'services', 'db', 'adapters', 'lib'],
  api: ['api', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib'],
  worker: ['worker', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib'],
  fixtures: ['fixtures', 'adapters', 'lib'],
  scripts: ['scripts', 'api', 'worker', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib', 'fixtures'],
  test: ['test', 'cli', 'scripts', 'api', 'worker', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib', 'fixtures'],
  bench: ['bench', 'test', 'scripts', 'api', 'worker', 'activities', 'workflows', 'services', 'db', 'adapters', 'lib', 'fixtures'],
  cli: ['cli', 'lib'],
};
const layerRules = Object.entries(MAY_IMPORT).map(([layer, allowed]) => {
  const banned = TOP.filter((t) => !allowed.includes(t));
  const patterns = [
    {
      regex: `^(\\.\\./)+(${banned.join('|')})(/|$)`,
      message: `${layer}/ may import only ${allowed.join(', ')} (imports point down; see README "How it is built").`,
      // A workflow names its activities' types (proxyActivities<typeof …>); that is no runtime import.
      allowTypeImports: layer === 'workflows',
    },
  ];
  return { files: [`${layer}/**/*.ts`], rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] } };
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'bin/**', '**/*.mjs'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // Fastify plugins and handlers are async by contract even when they await nothing.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
    },
  },
  ...layerRules,
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:fs', 'node:fs/*', 'fs', 'node:http', 'node:https', 'node:child_process', 'pg', '@aws-sdk/*', '@temporalio/client'],
              message: 'lib/ is pure: file and network I/O belong in adapters/.',
            },
          ],
        },
      ],
    },
  },
  {
    // Routes check the request, call one function and shape the answer (docs/code-layout.md):
    // a transaction, an audit row or a statement belongs to services/ or db/.
    files: ['api/routes/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: '../../db/pool', importNames: ['withTransaction'], message: 'no transaction in a route: call a function of services/.' },
            { name: '../../db/audit', importNames: ['appendAudit'], message: 'the audit row is written by the function that changes the state (services/).' },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        // A SQL statement is a string or template literal; a Temporal handle's .query(definition) is not SQL.
        {
          selector: "CallExpression[callee.property.name='query'][arguments.0.type=/^(Literal|TemplateLiteral)$/]",
          message: 'SQL lives in db/ (one module per table); call it from there.',
        },
      ],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['node:*', 'pg', 'fs', 'crypto', 'net', 'http', '@aws-sdk/*', 'jose', 'viem'] }],
    },
  },
);
