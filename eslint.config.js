// ESLint (typescript-eslint, typed rules). Type information comes from the TypeScript 6 API (typescript-eslint
// does not support TypeScript 7's compiler yet); the build itself compiles with TypeScript 7 (`typescript-native`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'kong/plugins/**', 'examples/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A promise nobody awaits or catches on the request path is an unhandled rejection waiting to happen.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-control-regex': 'off',
    },
  },
  {
    // Tests and benchmarks drive protocol peers and libraries with loosely typed messages.
    files: ['bench/**/*.ts', 'test/**/*.ts'],
    // Tests fire and observe promises on purpose (a store's observe racing an admit); the request path is src/.
    rules: { '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/no-floating-promises': 'off' },
  },
  // The core is pure: it imports nothing outside src/core (no I/O, no clock, no logger, no stateful library).
  // node:crypto stays allowed: digests and constant-time comparison are computation, not I/O.
  ...coreImportRules(),
);

function coreImportRules() {
  const libraries = {
    regex: '^(node:(?!crypto$)|pino|ioredis|postgres|@grpc|@electric-sql|opossum|prom-client|lru-cache)',
    message: 'src/core does no I/O and uses no stateful library.',
  };
  // One block per directory depth: from src/core/x.ts "../" leaves the core, from src/core/a/x.ts "../../" does.
  return [1, 2, 3].map((depth) => ({
    files: [`src/core/${'*/'.repeat(depth - 1)}*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: [`${'../'.repeat(depth)}*`], message: 'src/core imports only from src/core.' }, libraries] },
      ],
    },
  }));
}
