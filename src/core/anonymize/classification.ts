/**
 * The classification table: which FHIR elements are direct identifiers, quasi-identifiers or sensitive
 * clinical data. It is data, kept apart from the code that applies it, so a privacy reviewer can read and
 * amend it in one place. Three tiers are consulted (the resource element path; else `Type.element` or a
 * free-text element name; and the element's own data type) and the strictest answer wins, so a date is
 * always at least a quasi-identifier wherever it sits; an element without an entry inherits from its
 * parent, and an element's class is never less restrictive than its parent's.
 *
 * The HIPAA Safe Harbor list (45 CFR 164.514(b)(2)(i)) is the reference for the identifier categories.
 */

/** From most to least restrictive. */
export const DATA_CLASSES = ['direct', 'quasi', 'sensitive', 'other'] as const;
export type DataClass = (typeof DATA_CLASSES)[number];

/** The 18 identifier categories of HIPAA Safe Harbor, (A) to (R). */
export const SAFE_HARBOR_CATEGORIES = [
  'names',
  'geographic',
  'dates',
  'telephone',
  'fax',
  'email',
  'ssn',
  'mrn',
  'health-plan',
  'account',
  'license',
  'vehicle',
  'device',
  'url',
  'ip',
  'biometric',
  'photo',
  'other-unique',
] as const;
export type SafeHarborCategory = (typeof SAFE_HARBOR_CATEGORIES)[number];

export interface ClassEntry {
  /** Omitted when the entry only marks free text and the class is inherited. */
  readonly class?: DataClass;
  readonly categories?: readonly SafeHarborCategory[];
  /** Free text can hold anything (names, dates, places): dropped unless a rule names it. */
  readonly freeText?: boolean;
}

const IDENTIFIERS: readonly SafeHarborCategory[] = [
  'ssn',
  'mrn',
  'health-plan',
  'account',
  'license',
  'vehicle',
  'device',
  'other-unique',
];
const FREE_TEXT: ClassEntry = { class: 'direct', categories: ['other-unique'], freeText: true };
const SENSITIVE: ClassEntry = { class: 'sensitive' };
const QUASI: ClassEntry = { class: 'quasi' };
const OTHER: ClassEntry = { class: 'other' };
const DATES: ClassEntry = { class: 'quasi', categories: ['dates'] };

/** By the element's own data type, wherever it appears. */
export const TYPE_CLASSES: Readonly<Record<string, ClassEntry>> = {
  HumanName: { class: 'direct', categories: ['names'] },
  ContactPoint: { class: 'direct', categories: ['telephone', 'fax', 'email', 'url'] },
  Identifier: { class: 'direct', categories: IDENTIFIERS },
  Address: { class: 'quasi', categories: ['geographic'] },
  Attachment: { class: 'direct', categories: ['photo', 'biometric', 'url'] },
  Signature: { class: 'direct', categories: ['biometric'] },
  // A reference carries the target's logical id, which for a patient is a record number.
  Reference: { class: 'direct', categories: ['other-unique'] },
  // Extensions can carry anything (mother's maiden name, birth place, geolocation): fail closed.
  Extension: { class: 'direct', categories: ['other-unique'] },
  // Contained resources are whole records of their own.
  Resource: { class: 'direct', categories: ['other-unique'] },
  Narrative: FREE_TEXT,
  Annotation: FREE_TEXT,
  markdown: FREE_TEXT,
  xhtml: FREE_TEXT,
  url: { class: 'direct', categories: ['url'] },
  base64Binary: { class: 'direct', categories: ['photo', 'biometric'] },
  date: DATES,
  dateTime: DATES,
  instant: DATES,
  Period: DATES,
  Timing: DATES,
  // Ages over 89 are identifying (Safe Harbor counts them with dates).
  Age: DATES,
  SampledData: SENSITIVE,
  Meta: OTHER,
};

/** By `Type.element` (data types and backbone types), wherever the type appears. */
export const TYPE_ELEMENT_CLASSES: Readonly<Record<string, ClassEntry>> = {
  'Address.line': { class: 'direct', categories: ['geographic'] },
  'Address.text': { ...FREE_TEXT, categories: ['geographic'] },
  'Address.city': { class: 'quasi', categories: ['geographic'] },
  'Address.district': { class: 'quasi', categories: ['geographic'] },
  'Address.postalCode': { class: 'quasi', categories: ['geographic'] },
  'Address.state': { class: 'quasi', categories: ['geographic'] },
  'Address.country': { class: 'quasi', categories: ['geographic'] },
  'Reference.display': { class: 'direct', categories: ['names'] },
  'Annotation.author[x]': { class: 'direct', categories: ['names'] },
  'CodeableConcept.text': { freeText: true },
  'Meta.source': { class: 'direct', categories: ['url'] },
  'Meta.lastUpdated': DATES,
};

/** Root classes of the resource types Sluice moves; any other type is classified `direct` (fail closed). */
export const RESOURCE_CLASSES: Readonly<Record<string, DataClass>> = {
  Patient: 'other',
  Practitioner: 'other',
  PractitionerRole: 'other',
  Organization: 'other',
  Location: 'other',
  Encounter: 'other',
  Observation: 'other',
  Condition: 'other',
  Consent: 'other',
  Appointment: 'other',
  ServiceRequest: 'other',
  AllergyIntolerance: 'other',
  Procedure: 'other',
  MedicationRequest: 'other',
  Immunization: 'other',
  DiagnosticReport: 'other',
};

/** By full element path (schema form `value[x]` or a concrete choice such as `valueString`). */
export const RESOURCE_ELEMENT_CLASSES: Readonly<Record<string, ClassEntry>> = {
  // Patient
  'Patient.gender': QUASI,
  'Patient.birthDate': DATES,
  'Patient.deceased[x]': DATES,
  'Patient.deceasedBoolean': QUASI,
  'Patient.maritalStatus': QUASI,
  'Patient.multipleBirth[x]': QUASI,
  'Patient.communication': QUASI,
  'Patient.contact': { class: 'direct', categories: ['names', 'telephone', 'geographic'] },
  'Patient.photo': { class: 'direct', categories: ['photo'] },
  'Patient.link': { class: 'direct', categories: ['other-unique'] },
  // Practitioner and organisations: identifiers of people and employers
  'Practitioner.gender': QUASI,
  'Practitioner.birthDate': DATES,
  'Practitioner.communication': QUASI,
  'Practitioner.photo': { class: 'direct', categories: ['photo'] },
  'Organization.name': { class: 'quasi', categories: ['names'] },
  'Organization.alias': { class: 'quasi', categories: ['names'] },
  'Location.name': { class: 'quasi', categories: ['geographic'] },
  'Location.position': { class: 'direct', categories: ['geographic'] },
  // Encounter
  'Encounter.type': SENSITIVE,
  'Encounter.serviceType': SENSITIVE,
  'Encounter.reasonCode': SENSITIVE,
  'Encounter.diagnosis': SENSITIVE,
  'Encounter.hospitalization': SENSITIVE,
  // Observation
  'Observation.code': SENSITIVE,
  'Observation.value[x]': SENSITIVE,
  'Observation.valueString': { class: 'sensitive', freeText: true },
  'Observation.interpretation': SENSITIVE,
  'Observation.bodySite': SENSITIVE,
  'Observation.method': SENSITIVE,
  'Observation.referenceRange': SENSITIVE,
  'Observation.component': SENSITIVE,
  'Observation.component.valueString': { class: 'sensitive', freeText: true },
  // Condition
  'Condition.code': SENSITIVE,
  'Condition.clinicalStatus': SENSITIVE,
  'Condition.severity': SENSITIVE,
  'Condition.bodySite': SENSITIVE,
  'Condition.stage': SENSITIVE,
  'Condition.evidence': SENSITIVE,
  'Condition.onset[x]': DATES,
  'Condition.onsetString': { ...DATES, freeText: true },
  'Condition.abatement[x]': DATES,
  'Condition.abatementString': { ...DATES, freeText: true },
  // Consent: a provision can reveal which sensitive categories a person restricts
  'Consent.provision': SENSITIVE,
  // Appointment
  'Appointment.serviceType': SENSITIVE,
  'Appointment.specialty': SENSITIVE,
  'Appointment.reasonCode': SENSITIVE,
  // ServiceRequest
  'ServiceRequest.code': SENSITIVE,
  'ServiceRequest.orderDetail': SENSITIVE,
  'ServiceRequest.quantity[x]': SENSITIVE,
  'ServiceRequest.asNeeded[x]': SENSITIVE,
  'ServiceRequest.reasonCode': SENSITIVE,
  'ServiceRequest.bodySite': SENSITIVE,
  // Other clinical resources in the Synthea data
  'AllergyIntolerance.code': SENSITIVE,
  'AllergyIntolerance.reaction': SENSITIVE,
  'AllergyIntolerance.criticality': SENSITIVE,
  'Procedure.code': SENSITIVE,
  'Procedure.reasonCode': SENSITIVE,
  'Procedure.bodySite': SENSITIVE,
  'Procedure.outcome': SENSITIVE,
  'MedicationRequest.medication[x]': SENSITIVE,
  'MedicationRequest.dosageInstruction': SENSITIVE,
  'MedicationRequest.reasonCode': SENSITIVE,
  'Immunization.vaccineCode': SENSITIVE,
  'DiagnosticReport.code': SENSITIVE,
  'DiagnosticReport.conclusionCode': SENSITIVE,
};

/** A resource's own logical id: for a patient, a record number. */
export const RESOURCE_ID: ClassEntry = { class: 'direct', categories: ['mrn', 'other-unique'] };

/** String or markdown elements with these names are free text wherever they appear. */
export const FREE_TEXT_ELEMENT_NAMES: ReadonlySet<string> = new Set([
  'text',
  'comment',
  'description',
  'patientInstruction',
  'conclusion',
  'note',
]);

/** Element ids (`name.id`) only link parts of one resource; they are not about the person. */
export const ELEMENT_ID: ClassEntry = OTHER;

/** Keys the model does not know: the most restrictive class. */
export const UNKNOWN_ELEMENT: ClassEntry = { class: 'direct', categories: ['other-unique'] };
