/**
 * The one error vocabulary (lib/errors.ts): the ApplicationFailure types recorded in shipped
 * histories keep their strings, every answerable code gives the contract's status and body
 * `error`, an activity-internal failure never reaches a caller with its message, and the renamed
 * session lifetimes are still read under their old names.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { toBrokerError } from '../api/flow-errors';
import { loadConfig } from '../lib/config';
import { BrokerError, ERROR_STATUS, ERRORS, errorCodeOfFailure, FailureType, httpAnswerOf, type ErrorCode } from '../lib/errors';
import { MintActivityFailure } from '../workflows/mint.definitions';
import { failureOf, flowFailure } from '../workflows/failures';

void describe('error vocabulary', () => {
  void test('the failure types of recorded histories keep their strings', () => {
    // As workflows/definitions.ts, workflows/mint.definitions.ts and the activities spelled them before they were derived.
    assert.deepEqual(
      {
        invalidCode: FailureType.invalidCode,
        expired: FailureType.expired,
        tooManyAttempts: FailureType.tooManyAttempts,
        rateLimited: FailureType.rateLimited,
        badRequest: FailureType.badRequest,
        forbidden: FailureType.forbidden,
        unauthorized: FailureType.unauthorized,
        deliveryFailed: FailureType.deliveryFailed,
        auditError: FailureType.auditError,
        stsError: FailureType.stsError,
        replayed: FailureType.replayed,
        conflict: FailureType.conflict,
        chainUnavailable: FailureType.chainUnavailable,
        providerUnavailable: FailureType.providerUnavailable,
        mailTransient: FailureType.mailTransient,
      },
      {
        invalidCode: 'InvalidCode',
        expired: 'Expired',
        tooManyAttempts: 'TooManyAttempts',
        rateLimited: 'RateLimited',
        badRequest: 'BadRequest',
        forbidden: 'Forbidden',
        unauthorized: 'Unauthorized',
        deliveryFailed: 'DeliveryFailed',
        auditError: 'AuditFailed',
        stsError: 'StsFailed',
        replayed: 'Replayed',
        conflict: 'Conflict',
        chainUnavailable: 'ChainUnavailable',
        providerUnavailable: 'ProviderUnavailable',
        mailTransient: 'MailTransient',
      },
    );
    assert.deepEqual(MintActivityFailure, { signingFailed: 'MintSigningFailed', authoriseFailed: 'MintAuthoriseFailed' });
    assert.equal(FailureType.googleProviderFailed, 'GoogleProviderFailed');
    const types = Object.values(ERRORS).map((e) => e.failure);
    assert.equal(new Set(types).size, types.length, 'each code has its own failure type');
  });

  void test('HTTP answers are the contract’s (docs/contracts.md)', () => {
    assert.deepEqual(ERROR_STATUS, {
      bad_request: 400,
      unauthorized: 401,
      invalid_code: 401,
      forbidden: 403,
      not_found: 404,
      conflict: 409,
      expired: 410,
      payload_too_large: 413,
      too_many_attempts: 429,
      rate_limited: 429,
      internal: 500,
      audit_error: 500,
      sts_error: 502,
      unavailable: 503,
    });
    const expected: Partial<Record<ErrorCode, { status: number; error: string }>> = {
      replayed: { status: 409, error: 'conflict' },
      delivery_failed: { status: 503, error: 'unavailable' },
      chain_unavailable: { status: 503, error: 'unavailable' },
      provider_unavailable: { status: 503, error: 'unavailable' },
      mint_signing_failed: { status: 500, error: 'internal' },
    };
    for (const [code, answer] of Object.entries(expected)) assert.deepEqual(httpAnswerOf(code as ErrorCode), answer, code);
    const e = new BrokerError('replayed', 'used');
    assert.equal(e.kind, 'conflict');
    assert.equal(e.status, 409);
    assert.equal(e.code, 'ERR_CONFLICT');
    assert.equal(e.errorCode, 'replayed');
  });

  void test('a flow failure answers as its code; an internal one stays a 500 without its message', () => {
    const viaUpdate = (f: ApplicationFailure) => new WorkflowUpdateFailedError('update failed', f);
    const answered = toBrokerError(viaUpdate(flowFailure(FailureType.deliveryFailed, 'the login code could not be sent', { reason: 'x' })));
    assert.ok(answered instanceof BrokerError);
    assert.equal(answered.status, 503);
    assert.equal(answered.kind, 'unavailable');
    assert.deepEqual(answered.extra.body, { reason: 'x' });
    const byCode = toBrokerError(viaUpdate(failureOf('rate_limited', 'later', { details: { retry_after: 7 } })));
    assert.ok(byCode instanceof BrokerError);
    assert.equal(byCode.extra.headers?.['retry-after'], '7');
    const internal = viaUpdate(ApplicationFailure.nonRetryable('the OIDC signing key is not usable: secret detail', MintActivityFailure.signingFailed));
    assert.equal(toBrokerError(internal), internal, 'rethrown: the errors plugin answers a plain 500');
    assert.equal(errorCodeOfFailure('NoSuchType'), undefined);
    assert.equal(failureOf('audit_error', 'x', { retryable: true }).nonRetryable, false);
    assert.equal(failureOf('audit_error', 'x').nonRetryable, true);
  });
});

void describe('session lifetimes named for their session', () => {
  void test('new names, defaults, and the old names still read (with one warning each)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const d = loadConfig({});
    assert.equal(d.BROKER_LOGIN_SESSION_TTL_SECONDS, 12 * 3600);
    assert.equal(d.BROKER_STS_SESSION_DURATION_SECONDS, 3600);
    const old = loadConfig({ BROKER_SESSION_TTL_SECONDS: '600', BROKER_SESSION_DURATION_SECONDS: '1800' });
    assert.equal(old.BROKER_LOGIN_SESSION_TTL_SECONDS, 600);
    assert.equal(old.BROKER_STS_SESSION_DURATION_SECONDS, 1800);
    const both = loadConfig({ BROKER_SESSION_TTL_SECONDS: '600', BROKER_LOGIN_SESSION_TTL_SECONDS: '900' });
    assert.equal(both.BROKER_LOGIN_SESSION_TTL_SECONDS, 900, 'the new name wins');
    assert.throws(() => loadConfig({ BROKER_LOGIN_SESSION_TTL_SECONDS: '5' }), /BROKER_LOGIN_SESSION_TTL_SECONDS/);
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    assert.deepEqual(warnings, [
      'DeprecationWarning: BROKER_SESSION_TTL_SECONDS is deprecated: set BROKER_LOGIN_SESSION_TTL_SECONDS instead',
      'DeprecationWarning: BROKER_SESSION_DURATION_SECONDS is deprecated: set BROKER_STS_SESSION_DURATION_SECONDS instead',
    ]);
  });
});
