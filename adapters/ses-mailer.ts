import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { sesErrors, sesSendDuration, timed } from '../lib/metrics';
import { awsRequestHandler } from './aws-request';

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(mail: OutgoingMail): Promise<{ messageId: string }>;
}

/** SES errors that no retry will fix: the flow ends instead of retrying. */
export const PERMANENT_SES_ERRORS = new Set([
  'MessageRejected',
  'BadRequestException',
  'MailFromDomainNotVerifiedException',
  'AccountSuspendedException',
  'SendingPausedException',
  'NotFoundException',
]);

/**
 * Sends through SES v2. The SDK's own retries are off (maxAttempts 1): the Temporal activity
 * retry policy is the one place retries are decided. Its waits (adapters/aws-request.ts) end inside
 * the send activity's own 15 s.
 */
export class SesMailer implements Mailer {
  private readonly client: SESv2Client;
  constructor(
    private readonly from: string,
    opts: { region: string; endpoint?: string; /** Tests: a shorter answer timeout. */ requestTimeoutMs?: number },
  ) {
    this.client = new SESv2Client({
      region: opts.region,
      maxAttempts: 1,
      requestHandler: awsRequestHandler(opts.requestTimeoutMs),
      ...(opts.endpoint ? { endpoint: opts.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    });
  }

  async send(mail: OutgoingMail): Promise<{ messageId: string }> {
    const command = new SendEmailCommand({
      FromEmailAddress: this.from,
      Destination: { ToAddresses: [mail.to] },
      Content: { Simple: { Subject: { Data: mail.subject, Charset: 'UTF-8' }, Body: { Text: { Data: mail.text, Charset: 'UTF-8' } } } },
    });
    const out = await timed(
      (outcome, seconds) => sesSendDuration.observe({ outcome }, seconds),
      (code) => sesErrors.inc({ code }),
      () => this.client.send(command),
    );
    return { messageId: out.MessageId ?? '' };
  }

  destroy(): void {
    this.client.destroy();
  }
}
