/**
 * TEST-ONLY secrets of the recorded workflow histories in test/histories/: the payload key that
 * encrypted their payloads and the HMAC secret behind their workflow ids. They are public (this
 * file is committed), protect nothing, and belong to test/record-histories.ts and
 * test/replay.test.ts alone: never configure them in a real broker.
 */
export const REPLAY_TEST_ONLY_ENV: Readonly<{ BROKER_PAYLOAD_KEY: string; BROKER_SECRET: string }> = Object.freeze({
  BROKER_PAYLOAD_KEY: '40e965ae5a349a485e19e7945b582e6256038603af71a1baa008f0c19f470b4e',
  BROKER_SECRET: 'c63cfbc9d0387bfb75beb97f799fc99d1993eed3c6dbd42f4b6029a99270b652',
});
