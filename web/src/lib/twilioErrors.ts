// Twilio's error codes in words (https://www.twilio.com/docs/api/errors): the ones campaign
// sends and calls meet, as a person reading a failed item needs them.

const CODES: Record<number, string> = {
  20003: 'Twilio refused the credentials (check the account SID and token).',
  20429: 'Too many requests to Twilio at once; it will be retried.',
  21210: "The caller ID is not a number verified for this account.",
  21211: "The 'To' number is not a valid phone number.",
  21212: "The 'From' number is not a valid phone number or caller ID.",
  21214: "The 'To' number cannot be reached by a call.",
  21215: 'Calls to this country or region are not enabled (geo permissions).',
  21216: 'Calls to this number are blocked.',
  21217: 'The phone number to call is not valid.',
  21401: 'The phone number is not valid.',
  21408: 'Sending to this country or region is not enabled (geo permissions).',
  21602: 'The message has no body.',
  21603: "A 'From' number or Messaging Service is required.",
  21604: "A 'To' number is required.",
  21606: "The 'From' number cannot send SMS to this destination (not an SMS-capable number of the account).",
  21608: 'A trial account can only send to verified numbers.',
  21610: 'The person unsubscribed (replied STOP); Twilio blocks messages to them until they reply START.',
  21611: 'The sender’s queue is full (more than 10 hours of messages waiting).',
  21612: "The 'To' number cannot be reached by SMS from this sender.",
  21614: "The 'To' number is not a mobile number (a landline cannot receive SMS).",
  21617: 'The message is longer than 1,600 characters.',
  21619: 'The message needs a body or media.',
  21621: "The 'From' number is not enabled for MMS.",
  21910: "The 'From' and 'To' numbers are on different channels.",
  30001: 'The message waited too long in the sender’s queue and was dropped.',
  30002: 'The Twilio account is suspended.',
  30003: 'The handset is unreachable (switched off or out of coverage).',
  30004: 'The message was blocked (the person blocked it, or the carrier did).',
  30005: 'The number is unknown or no longer in service.',
  30006: 'The number is a landline or its carrier cannot receive SMS.',
  30007: 'The carrier filtered the message as spam.',
  30008: 'The carrier reported an unknown error.',
  30009: 'Part of a multi-part message was lost.',
  30010: 'The message price exceeded the maximum price set.',
  30019: 'The content of the message was too long for the carrier.',
  30022: 'The US A2P 10DLC rate limit of the sender was exceeded.',
  30023: 'The US A2P 10DLC daily cap of the sender was reached.',
  30024: 'The sender is not registered for numeric sender ID in the destination.',
  30032: 'The toll-free number is not verified.',
  30034: 'The US A2P 10DLC number is not registered to a campaign (unregistered 10DLC traffic is blocked).',
  30035: 'The sender’s WhatsApp or Messaging Service configuration is incomplete.',
  30036: 'The message expired before it could be sent (validity period).',
  30038: 'The OTP message was blocked by the carrier.',
  30044: 'The carrier did not report delivery in time; delivery is unknown.',
  30450: 'The message was blocked as a known spam or fraud pattern.',
  63003: 'The WhatsApp channel could not find the recipient.',
  63007: 'Twilio could not find a WhatsApp sender for the From number.',
  63015: 'The WhatsApp sandbox recipient has not joined the sandbox.',
  63016:
    'Outside the 24-hour WhatsApp window: a free-form message is refused; send an approved content template instead.',
  63018: 'The WhatsApp channel’s rate limit was exceeded.',
  63024: 'The WhatsApp recipient is not a valid WhatsApp user.',
  63032: 'The WhatsApp recipient is in a country Meta does not allow.',
};

/** What a Twilio error code means, in words, or a pointer to Twilio's page for codes not here. */
export function twilioError(code: number | null | undefined): string | null {
  if (code == null) return null;
  return CODES[code] ?? `Twilio error ${code} (see twilio.com/docs/api/errors/${code}).`;
}

/** Twilio's page for a code. */
export function twilioErrorUrl(code: number): string {
  return `https://www.twilio.com/docs/api/errors/${code}`;
}
