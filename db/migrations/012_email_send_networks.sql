-- The requester network of each send (docs/email-login.md): the cooldown and the hourly allowance
-- are per (mailbox, network), the ceiling per mailbox, so a stranger on another network cannot
-- spend the owner's allowance. The network (IPv4 /24, IPv6 /48) appears only as its keyed digest;
-- rows written before this column have none and count toward the ceiling.
ALTER TABLE email_sends ADD COLUMN network_key text;
