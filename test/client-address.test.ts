import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalClientAddress, canonicalIp, requesterNetwork } from '../lib/client-address';
import { emailSendMailbox } from '../lib/email-send-budget';

/** The pure parts behind the limits' keys; the HTTP tests (rate-limits, email-login-budget) replay the attacks. */
void describe('client addresses in one spelling', () => {
  void test('spellings of one address are one; what is no IP address is undefined', () => {
    const same: [string, string][] = [
      ['198.51.100.7', '198.51.100.7'],
      [' 198.051.100.007 ', '198.51.100.7'],
      ['198.51.100.7:5123', '198.51.100.7'],
      // The port is dropped whatever it is: it never says who the client is.
      ['198.51.100.7:99999', '198.51.100.7'],
      ['[::ffff:198.51.100.7]:80', '198.51.100.7'],
      ['::FFFF:c633:6407', '198.51.100.7'],
      ['::ffff:198.051.100.7', '198.51.100.7'],
      ['[2001:DB8:0:0::1]:443', '2001:db8::1'],
      ['fe80::1%eth0', 'fe80::1'],
      ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ];
    for (const [given, canonical] of same) assert.equal(canonicalIp(given), canonical, given);
    for (const junk of ['', 'unknown', 'not-an-address', '0x7f.0.0.1', '2130706433', '1.2.3.256', '[::1', 'a:b', '1.2.3']) {
      assert.equal(canonicalIp(junk), undefined, junk);
    }
  });

  void test('a client entry that is no address counts as the nearest hop that is one', () => {
    assert.equal(canonicalClientAddress({ ip: '[2001:db8::5]:1', ips: ['127.0.0.1', '[2001:db8::5]:1'] }), '2001:db8::5');
    assert.equal(canonicalClientAddress({ ip: 'junk', ips: ['127.0.0.1', '10.0.0.9', 'junk'] }), '10.0.0.9');
    assert.equal(canonicalClientAddress({ ip: 'junk', ips: ['127.0.0.1', 'more junk', 'junk'] }), '127.0.0.1');
    assert.equal(canonicalClientAddress({ ip: 'junk' }), 'unknown');
  });

  void test('a requester network is an IPv4 /24 or an IPv6 /48', () => {
    assert.equal(requesterNetwork('198.51.100.7'), '198.51.100.0/24');
    assert.equal(requesterNetwork('198.51.100.250'), requesterNetwork('198.51.100.1'));
    assert.notEqual(requesterNetwork('198.51.101.1'), requesterNetwork('198.51.100.1'));
    assert.equal(requesterNetwork('2001:db8:77:ffff::5'), requesterNetwork('2001:db8:77:1::1'));
    assert.notEqual(requesterNetwork('2001:db8:78::1'), requesterNetwork('2001:db8:77::1'));
    assert.equal(requesterNetwork('::1'), requesterNetwork('::2'));
  });
});

void describe('the mailbox of an address (the send budget key, never the identity)', () => {
  void test('Gmail drops dots and +tags, listed providers +tags, every other domain is as typed', () => {
    assert.equal(emailSendMailbox('J.Doe+Work@GMail.com'), 'jdoe@gmail.com');
    assert.equal(emailSendMailbox('j.d.o.e@googlemail.com'), 'jdoe@gmail.com');
    assert.equal(emailSendMailbox('jdoe+a+b@outlook.com'), 'jdoe@outlook.com');
    assert.equal(emailSendMailbox('j.doe+x@icloud.com'), 'j.doe@icloud.com');
    assert.equal(emailSendMailbox('j.doe+x@example.org'), 'j.doe+x@example.org');
    assert.equal(emailSendMailbox('j.doe+x@mail.gmail.com'), 'j.doe+x@mail.gmail.com');
    // Nothing left of the local part: as typed.
    assert.equal(emailSendMailbox('+x@gmail.com'), '+x@gmail.com');
    assert.equal(emailSendMailbox('...@gmail.com'), '...@gmail.com');
  });
});
