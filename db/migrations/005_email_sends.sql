-- Codes mailed per address, across every email-login flow: the durable per-address send budget and
-- resend cooldown (docs/email-login.md). One row per dispatch, written by the send activity before
-- it mails; a retried send finds its own row and is not counted twice. The address appears only as
-- its keyed digest (emailKey, BROKER_SECRET); rows older than an hour decide nothing and are purged.
CREATE TABLE email_sends (
  dispatch_key text PRIMARY KEY,
  address_key text NOT NULL,
  sent_at timestamptz NOT NULL
);

CREATE INDEX email_sends_address_idx ON email_sends (address_key, sent_at);
CREATE INDEX email_sends_sent_at_idx ON email_sends (sent_at);
