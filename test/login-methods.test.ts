import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LOGIN_METHOD_ROUTES } from '../api/login-methods';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { LOGIN_METHOD_IDS, LOGIN_METHODS, SESSION_METHODS } from '../lib/login-methods';
import * as workflows from '../workflows';

/** The login-method registry (lib/login-methods.ts) and what each layer derives from it. */
void describe('login-method registry', () => {
  void test("every method's workflow type is exported by the workflow bundle's entry, once", () => {
    const exported = new Set(Object.keys(workflows));
    const types = LOGIN_METHOD_IDS.map((id) => LOGIN_METHODS[id].workflowType);
    for (const type of types) assert.ok(exported.has(type), `workflows/index.ts does not export ${type}: add its line`);
    assert.equal(new Set(types).size, types.length, 'two methods name one workflow type');
  });

  void test('flows, session methods and metadata are distinct per method and reach FLOW_METADATA', () => {
    const flows = LOGIN_METHOD_IDS.map((id) => LOGIN_METHODS[id].flow);
    assert.equal(new Set(flows).size, flows.length);
    assert.equal(new Set(SESSION_METHODS).size, SESSION_METHODS.length, 'one amr value belongs to one method');
    assert.deepEqual([...SESSION_METHODS].sort(), ['device', 'email', 'google', 'google_cli', 'passkey', 'siwe', 'tee', 'wallet']);
    for (const id of LOGIN_METHOD_IDS) assert.deepEqual((FLOW_METADATA as Record<string, unknown>)[LOGIN_METHODS[id].flow], LOGIN_METHODS[id].metadata);
  });

  void test('every method has its routes', () => {
    assert.deepEqual(Object.keys(LOGIN_METHOD_ROUTES).sort(), [...LOGIN_METHOD_IDS].sort());
    for (const id of LOGIN_METHOD_IDS) assert.equal(typeof LOGIN_METHOD_ROUTES[id], 'function');
  });
});
