import { describe, expect, it } from 'vitest';
import { contactVariables, render, smsSegments, templateVariables, variableKey } from './template';

describe('render', () => {
  const vars = { name: 'Ada', renewal_date: 'Monday' };
  it('fills placeholders, spaces allowed, like the worker', () => {
    expect(render('Hi {{name}}, {{ name }}!', vars)).toBe('Hi Ada, Ada!');
  });
  it('finds columns by their normalised key', () => {
    expect(render('Due {{Renewal Date}}', vars)).toBe('Due Monday');
  });
  it('renders unknown variables as nothing and keeps an unclosed brace', () => {
    expect(render('Hi {{nobody}}x {{open', vars)).toBe('Hi x {{open');
  });
  it('lists the variables in order of first use', () => {
    expect(templateVariables('{{b}} {{ a }} {{b}}')).toEqual(['b', 'a']);
  });
  it('normalises keys like the import', () => {
    expect(variableKey('  Renewal  Date! ')).toBe('renewal_date');
  });
  it('offers the contact fields, which win over same-named variables', () => {
    expect(contactVariables({ phone: '+1', name: 'Ada', variables: { name: 'x', plan: 'gold' } })).toEqual({
      phone: '+1',
      name: 'Ada',
      plan: 'gold',
    });
  });
});

describe('smsSegments', () => {
  it('fits 160 GSM-7 characters in one segment', () => {
    expect(smsSegments('a'.repeat(160))).toMatchObject({ encoding: 'GSM-7', segments: 1, remaining: 0 });
  });
  it('splits longer GSM-7 text in 153-septet parts', () => {
    expect(smsSegments('a'.repeat(161))).toMatchObject({ segments: 2, remaining: 145 });
  });
  it('counts extension characters twice', () => {
    expect(smsSegments('€'.repeat(80))).toMatchObject({ encoding: 'GSM-7', units: 160, segments: 1 });
  });
  it('switches to UCS-2 for anything outside GSM-7', () => {
    expect(smsSegments('Hi 👋')).toMatchObject({ encoding: 'UCS-2', units: 5, segments: 1 });
    expect(smsSegments('ü'.repeat(71))).toMatchObject({ encoding: 'GSM-7' });
    expect(smsSegments('ł'.repeat(71))).toMatchObject({ encoding: 'UCS-2', segments: 2 });
  });
  it('says nothing costs nothing', () => {
    expect(smsSegments('')).toMatchObject({ segments: 0 });
  });
});
