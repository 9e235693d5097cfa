/**
 * A broker URL nothing answers on, for tests of "the broker cannot be reached": port 1 on
 * loopback, which no test listens on, so the connection is refused at once. A port found free and
 * released can be taken by another test file's server while this one still uses it (files run two
 * at a time), which then answers in its place.
 */
export const DEAD_BROKER_URL = 'http://127.0.0.1:1';
