import { z } from 'zod';

/**
 * Ends (of a credential, a grant, an exception, a mute) as the config file and the admin API
 * write them. A date ends at the last millisecond of that day, UTC, so that `expires: 2026-06-30`
 * is accepted all of that day wherever the operator sits; an RFC 3339 date-time with an offset
 * is that instant.
 */
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

/** An end in the admin API: a date (YYYY-MM-DD) or an RFC 3339 date-time with an offset. */
export const endInput = z.union([z.iso.date(), z.iso.datetime({ offset: true })]);

/** The last millisecond of a YYYY-MM-DD date, UTC, epoch ms. */
export function endOfDay(date: string): number {
  return Date.parse(`${date}T23:59:59.999Z`);
}

/** An end written as a date (the end of that day, UTC) or a date-time (that instant), epoch ms. */
export function parseEnd(value: string): number {
  return DATE_ONLY.test(value) ? endOfDay(value) : Date.parse(value);
}
