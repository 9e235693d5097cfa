/**
 * @deprecated The API's dependency module is api/dependencies.ts; this re-export keeps imports
 * of the old path compiling until they are moved, then it goes.
 */
export * from './dependencies';
