/**
 * PurposeOfUse (HL7 v3 ActReason) hierarchy, as data: each code maps to its parent. A rule about a general
 * purpose covers its specialisations (a permit for TREAT covers ETREAT), never the other way round.
 * Transcribed from the v3-ActReason code system (FHIR R4, terminology.hl7.org); codes not listed are
 * compared by equality only.
 */
export const PURPOSE_OF_USE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';

const PURPOSE_OID = 'urn:oid:2.16.840.1.113883.5.8';

export const PURPOSE_PARENT: Readonly<Record<string, string>> = {
  HMARKT: 'PurposeOfUse',
  HOPERAT: 'PurposeOfUse',
  HPAYMT: 'PurposeOfUse',
  HRESCH: 'PurposeOfUse',
  PATRQT: 'PurposeOfUse',
  PUBHLTH: 'PurposeOfUse',
  TREAT: 'PurposeOfUse',
  // healthcare operations
  CAREMGT: 'HOPERAT',
  DONAT: 'HOPERAT',
  FRAUD: 'HOPERAT',
  GOV: 'HOPERAT',
  HACCRED: 'HOPERAT',
  HCOMPL: 'HOPERAT',
  HDECD: 'HOPERAT',
  HDIRECT: 'HOPERAT',
  HDM: 'HOPERAT',
  HLEGAL: 'HOPERAT',
  HOUTCOMS: 'HOPERAT',
  HPRGRP: 'HOPERAT',
  HQUALIMP: 'HOPERAT',
  HSYSADMIN: 'HOPERAT',
  LABELING: 'HSYSADMIN',
  METAMGT: 'HSYSADMIN',
  MEMADMIN: 'HOPERAT',
  MILCDM: 'HOPERAT',
  PATADMIN: 'HOPERAT',
  PATSFTY: 'HOPERAT',
  PERFMSR: 'HOPERAT',
  RECORDMGT: 'HOPERAT',
  SYSDEV: 'HOPERAT',
  HTEST: 'SYSDEV',
  TRAIN: 'HOPERAT',
  // payment
  CLMATTCH: 'HPAYMT',
  COVAUTH: 'HPAYMT',
  COVERAGE: 'HPAYMT',
  ELIGDTRM: 'COVERAGE',
  ELIGVER: 'COVERAGE',
  ENROLLM: 'COVERAGE',
  MILDCRG: 'COVERAGE',
  REMITADV: 'HPAYMT',
  // research
  BIORCH: 'HRESCH',
  CLINTRCH: 'HRESCH',
  CLINTRCHNPC: 'CLINTRCH',
  CLINTRCHPC: 'CLINTRCH',
  PRECLINTRCH: 'CLINTRCH',
  DSRCH: 'HRESCH',
  POARCH: 'HRESCH',
  TRANSRCH: 'HRESCH',
  // patient requested
  FAMRQT: 'PATRQT',
  PWATRNY: 'PATRQT',
  SUPNWK: 'PATRQT',
  // public health
  DISASTER: 'PUBHLTH',
  THREAT: 'PUBHLTH',
  // treatment
  CLINTRL: 'TREAT',
  COC: 'TREAT',
  ETREAT: 'TREAT',
  BTG: 'ETREAT',
  ERTREAT: 'ETREAT',
  POPHLTH: 'TREAT',
};

/** True when `requested` is `ruled` or one of its specialisations. */
export function purposeWithin(requested: string, ruled: string): boolean {
  let code: string | undefined = requested;
  // The table is a tree of depth < 6; the bound guards against a cycle introduced by an edit.
  for (let i = 0; code !== undefined && i < 8; i++) {
    if (code === ruled) return true;
    code = PURPOSE_PARENT[code];
  }
  return false;
}

/** True when a coded purpose is in the PurposeOfUse system (or carries no system). */
export function isPurposeOfUseSystem(system: string | undefined): boolean {
  return system === undefined || system === PURPOSE_OF_USE_SYSTEM || system === PURPOSE_OID;
}
