import { toId18 } from './ids.ts';

/**
 * The CRM's schema, as data: the objects, their fields and field types. Adding an object or a field
 * is an edit to `OBJECTS` below; validation, describe, SOQL and storage all read from here.
 */

export type FieldType =
  | { readonly kind: 'id' }
  | { readonly kind: 'string'; readonly length: number }
  | { readonly kind: 'textarea'; readonly length: number }
  | { readonly kind: 'email' }
  | { readonly kind: 'phone' }
  | { readonly kind: 'url' }
  | { readonly kind: 'boolean' }
  | { readonly kind: 'int'; readonly digits: number }
  | { readonly kind: 'double'; readonly precision: number; readonly scale: number }
  | { readonly kind: 'date' }
  | { readonly kind: 'datetime' }
  | { readonly kind: 'picklist'; readonly values: readonly string[]; readonly restricted: boolean }
  | {
      readonly kind: 'reference';
      readonly to: string;
      readonly relationshipName: string;
      /** Master-detail: the child is deleted with its parent and cannot be moved to another parent. */
      readonly masterDetail?: boolean;
    }
  /** RecordTypeId: one of the object's `recordTypes`. */
  | { readonly kind: 'recordType' };

export type FieldKind = FieldType['kind'];

/** Account fields that exist only on person accounts (HCP) or only on business accounts (HCO). */
export type AccountVariant = 'person' | 'business';

export interface FieldSpec {
  readonly name: string;
  readonly label: string;
  readonly type: FieldType;
  /** Must be non-null on insert and cannot be cleared (for a `variant` field: on that variant only). */
  readonly required?: boolean;
  readonly externalId?: boolean;
  readonly unique?: boolean;
  /** Unique and external-id matching is case-insensitive unless this is set (the Salesforce default). */
  readonly caseSensitive?: boolean;
  /** System or computed: writing it is refused with INVALID_FIELD_FOR_INSERT_UPDATE. */
  readonly readOnly?: boolean;
  readonly variant?: AccountVariant;
  /** A value like `PP-{000000}` used when the field is omitted on insert. */
  readonly autoNumber?: string;
}

export interface RecordTypeSpec {
  readonly id: string;
  readonly developerName: string;
  readonly label: string;
  /** Records of this type are person accounts. */
  readonly person: boolean;
}

export interface ObjectSpec {
  readonly name: string;
  readonly label: string;
  readonly keyPrefix: string;
  readonly custom: boolean;
  /** Every field, system fields included, in describe order. */
  readonly fields: readonly FieldSpec[];
  readonly recordTypes?: readonly RecordTypeSpec[];
  /** Developer name of the record type used when an insert names none. */
  readonly defaultRecordType?: string;
  /** While `field` holds `value` the record refuses updates and deletes with ENTITY_IS_LOCKED. */
  readonly lock?: { readonly field: string; readonly value: string };
}

/** Fixed 18-character RecordType ids of Account: HCP (person account) and HCO (business account). */
export const RECORD_TYPES: { readonly hcp: string; readonly hco: string } = Object.freeze({
  hcp: toId18('0128d0000005HcP'),
  hco: toId18('0128d0000005HcO'),
});

export const SYSTEM_FIELDS = [
  'Id',
  'IsDeleted',
  'CreatedDate',
  'LastModifiedDate',
  'SystemModstamp',
] as const;
export type SystemField = (typeof SYSTEM_FIELDS)[number];

// Field builders keep the table below readable.
const str = (name: string, label: string, length = 255, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  name,
  label,
  type: { kind: 'string', length },
  ...extra,
});
const bool = (name: string, label: string): FieldSpec => ({ name, label, type: { kind: 'boolean' } });
const date = (name: string, label: string, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  name,
  label,
  type: { kind: 'date' },
  ...extra,
});
const datetime = (name: string, label: string, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  name,
  label,
  type: { kind: 'datetime' },
  ...extra,
});
const picklist = (
  name: string,
  label: string,
  values: readonly string[],
  restricted: boolean,
): FieldSpec => ({
  name,
  label,
  type: { kind: 'picklist', values, restricted },
});
const ref = (
  name: string,
  label: string,
  to: string,
  extra: Partial<FieldSpec> & { masterDetail?: boolean } = {},
): FieldSpec => {
  const { masterDetail, ...rest } = extra;
  return {
    name,
    label,
    type: {
      kind: 'reference',
      to,
      relationshipName: name.replace(/__c$/, '__r').replace(/Id$/, ''),
      ...(masterDetail ? { masterDetail } : {}),
    },
    ...rest,
  };
};
const externalKey = (name: string, label: string, length = 120, caseSensitive = false): FieldSpec =>
  str(name, label, length, { externalId: true, unique: true, ...(caseSensitive ? { caseSensitive } : {}) });
const lineage: FieldSpec = {
  name: 'Sluice_Lineage__c',
  label: 'Sluice Lineage',
  type: { kind: 'textarea', length: 131_072 },
};

function systemFields(): FieldSpec[] {
  return [
    { name: 'Id', label: 'Record ID', type: { kind: 'id' }, readOnly: true },
    { name: 'IsDeleted', label: 'Deleted', type: { kind: 'boolean' }, readOnly: true },
    { name: 'CreatedDate', label: 'Created Date', type: { kind: 'datetime' }, readOnly: true },
    { name: 'LastModifiedDate', label: 'Last Modified Date', type: { kind: 'datetime' }, readOnly: true },
    { name: 'SystemModstamp', label: 'System Modstamp', type: { kind: 'datetime' }, readOnly: true },
  ];
}

function defineObject(
  spec: Omit<ObjectSpec, 'fields'> & { readonly fields: readonly FieldSpec[] },
): ObjectSpec {
  return Object.freeze({ ...spec, fields: Object.freeze([...systemFields(), ...spec.fields]) });
}

export const APPROVED_EMAIL_OPT_TYPES = ['Explicit_Opt_in_vod', 'Implicit_Opt_In_vod', 'Never_vod'] as const;
export const CALL_STATUSES = ['Planned_vod', 'Saved_vod', 'Submitted_vod'] as const;

export const OBJECTS: readonly ObjectSpec[] = Object.freeze([
  defineObject({
    name: 'Account',
    label: 'Account',
    keyPrefix: '001',
    custom: false,
    recordTypes: [
      { id: RECORD_TYPES.hcp, developerName: 'Professional_vod', label: 'Professional', person: true },
      { id: RECORD_TYPES.hco, developerName: 'Hospital_vod', label: 'Hospital', person: false },
    ],
    defaultRecordType: 'Hospital_vod',
    fields: [
      { name: 'RecordTypeId', label: 'Record Type ID', type: { kind: 'recordType' } },
      { name: 'IsPersonAccount', label: 'Is Person Account', type: { kind: 'boolean' }, readOnly: true },
      str('Name', 'Account Name', 255, { required: true, variant: 'business' }),
      str('FirstName', 'First Name', 40, { variant: 'person' }),
      str('LastName', 'Last Name', 80, { required: true, variant: 'person' }),
      externalKey('External_ID_vod__c', 'External ID'),
      str('NPI_vod__c', 'NPI', 40, { externalId: true }),
      picklist('Credentials_vod__c', 'Credentials', ['MD', 'DO', 'NP', 'PA', 'RN', 'PharmD'], false),
      picklist('Specialty_1_vod__c', 'Specialty 1', [], false),
      picklist('Gender_vod__c', 'Gender', ['M', 'F', 'U'], false),
      picklist('Account_Class_vod__c', 'Account Class', ['PRAC', 'HOSP', 'CLIN'], false),
      picklist(
        'Customer_Master_Status_vod__c',
        'Customer Master Status',
        ['Active', 'Inactive', 'Under_Review'],
        false,
      ),
      { name: 'Phone', label: 'Phone', type: { kind: 'phone' } },
      { name: 'Fax', label: 'Fax', type: { kind: 'phone' } },
      { name: 'Website', label: 'Website', type: { kind: 'url' } },
      { name: 'PersonEmail', label: 'Email', type: { kind: 'email' }, variant: 'person' },
      { name: 'PersonMobilePhone', label: 'Mobile', type: { kind: 'phone' }, variant: 'person' },
      { ...bool('PersonDoNotCall', 'Do Not Call'), variant: 'person' },
      { ...bool('PersonHasOptedOutOfEmail', 'Email Opt Out'), variant: 'person' },
      picklist('Approved_Email_Opt_Type_vod__c', 'Approved Email Opt Type', APPROVED_EMAIL_OPT_TYPES, true),
      bool('PDRP_Opt_Out_vod__c', 'PDRP Opt Out'),
      date('PDRP_Opt_Out_Date_vod__c', 'PDRP Opt Out Date'),
      ref('Primary_Parent_vod__c', 'Primary Parent', 'Account'),
      lineage,
    ],
  }),
  defineObject({
    name: 'Address_vod__c',
    label: 'Address',
    keyPrefix: 'a0A',
    custom: true,
    fields: [
      str('Name', 'Address line 1', 255, { required: true }),
      ref('Account_vod__c', 'Account', 'Account', { required: true, masterDetail: true }),
      str('Address_line_2_vod__c', 'Address line 2', 255),
      str('City_vod__c', 'City', 40),
      picklist('State_vod__c', 'State', [], false),
      str('Zip_vod__c', 'Zip', 20),
      picklist('Country_vod__c', 'Country', ['us', 'ca'], false),
      bool('Primary_vod__c', 'Primary'),
      bool('Inactive_vod__c', 'Inactive'),
      externalKey('External_ID_vod__c', 'External ID'),
      lineage,
    ],
  }),
  defineObject({
    name: 'Child_Account_vod__c',
    label: 'Child Account',
    keyPrefix: 'a0B',
    custom: true,
    fields: [
      str('Name', 'Child Account Name', 80, { autoNumber: 'CA-{0000000}' }),
      ref('Parent_Account_vod__c', 'Parent Account', 'Account', { required: true }),
      ref('Child_Account_vod__c', 'Child Account', 'Account', { required: true }),
      bool('Primary_vod__c', 'Primary'),
      bool('Network_Primary_vod__c', 'Network Primary'),
      str('Parent_Child_Name_vod__c', 'Parent Child Name', 255),
      externalKey('External_ID_vod__c', 'External ID'),
      lineage,
    ],
  }),
  defineObject({
    name: 'Call2_vod__c',
    label: 'Call',
    keyPrefix: 'a0C',
    custom: true,
    lock: { field: 'Status_vod__c', value: 'Submitted_vod' },
    fields: [
      str('Name', 'Call Name', 80, { autoNumber: 'C-{0000000}' }),
      ref('Account_vod__c', 'Account', 'Account'),
      ref('Address_vod__c', 'Address', 'Address_vod__c'),
      date('Call_Date_vod__c', 'Date'),
      datetime('Call_Datetime_vod__c', 'Datetime'),
      picklist('Status_vod__c', 'Status', CALL_STATUSES, true),
      picklist(
        'Call_Channel_vod__c',
        'Call Channel',
        ['In_person_vod', 'Phone_vod', 'Video_vod', 'Email_vod'],
        false,
      ),
      picklist('Call_Type_vod__c', 'Call Type', ['Call Only', 'Detail Only', 'Group Detail'], false),
      str('Territory_vod__c', 'Territory', 255),
      externalKey('Mobile_ID_vod__c', 'Mobile ID', 100),
      lineage,
    ],
  }),
  defineObject({
    name: 'Multichannel_Consent_vod__c',
    label: 'Multichannel Consent',
    keyPrefix: 'a0D',
    custom: true,
    fields: [
      str('Name', 'Multichannel Consent Name', 80, { autoNumber: 'MC-{0000000}' }),
      ref('Account_vod__c', 'Account', 'Account'),
      str('Consent_Type_vod__c', 'Consent Type', 255),
      str('Consent_Line_vod__c', 'Consent Line', 255),
      str('Content_Type_vod__c', 'Content Type', 255),
      str('Product_vod__c', 'Product', 255),
      str('Channel_Value_vod__c', 'Channel Value', 255),
      picklist('Opt_Type_vod__c', 'Opt Type', ['Opt_In_vod', 'Opt_Out_vod'], true),
      datetime('Capture_Datetime_vod__c', 'Capture Datetime', { required: true }),
      date('Opt_Expiration_Date_vod__c', 'Opt Expiration Date'),
      externalKey('External_ID_vod__c', 'External ID'),
      lineage,
    ],
  }),
  defineObject({
    name: 'Patient_Profile__c',
    label: 'Patient Profile',
    keyPrefix: 'a0E',
    custom: true,
    fields: [
      str('Name', 'Patient Profile Name', 80, { autoNumber: 'PP-{000000}' }),
      externalKey('External_ID__c', 'External ID', 255, true),
      { name: 'Birth_Year__c', label: 'Birth Year', type: { kind: 'double', precision: 4, scale: 0 } },
      bool('Age_Over_89__c', 'Age Over 89'),
      str('Zip3__c', 'Zip3', 3),
      picklist('Gender__c', 'Gender', ['Male', 'Female', 'Other', 'Unknown'], true),
      str('Source_System__c', 'Source System', 255),
      lineage,
    ],
  }),
]);

export interface Schema {
  readonly objects: readonly ObjectSpec[];
  /** Case-insensitive, as Salesforce object names are. */
  object(name: string): ObjectSpec | undefined;
  objectByKeyPrefix(prefix: string): ObjectSpec | undefined;
  /** Case-insensitive field lookup on an object. */
  field(object: ObjectSpec, name: string): FieldSpec | undefined;
  /** The reference field whose relationship name is `name` (case-insensitive). */
  relationship(object: ObjectSpec, name: string): FieldSpec | undefined;
  /** Fields kept in the key index: external ids, unique fields and master-detail references. */
  keyFields(object: ObjectSpec): readonly FieldSpec[];
  /** Master-detail references to `object`: the children deleted with it. */
  detailsOf(object: ObjectSpec): readonly { readonly object: ObjectSpec; readonly field: FieldSpec }[];
  /** References to `object` from lockable objects: a locked record there keeps it from deletion. */
  lockingReferencesTo(
    object: ObjectSpec,
  ): readonly { readonly object: ObjectSpec; readonly field: FieldSpec }[];
}

export function createSchema(objects: readonly ObjectSpec[] = OBJECTS): Schema {
  const byName = new Map(objects.map((o) => [o.name.toLowerCase(), o]));
  const byPrefix = new Map(objects.map((o) => [o.keyPrefix, o]));
  const fields = new Map(objects.map((o) => [o, new Map(o.fields.map((f) => [f.name.toLowerCase(), f]))]));
  const relationships = new Map(
    objects.map((o) => [
      o,
      new Map(
        o.fields.flatMap((f) =>
          f.type.kind === 'reference' ? [[f.type.relationshipName.toLowerCase(), f]] : [],
        ),
      ),
    ]),
  );
  const keys = new Map(
    objects.map((o) => [
      o,
      // Master-detail references (cascading deletes) and every reference of a lockable object (a
      // record a locked one points at cannot be deleted).
      o.fields.filter(
        (f) =>
          f.externalId ||
          f.unique ||
          (f.type.kind === 'reference' && (f.type.masterDetail || o.lock !== undefined)),
      ),
    ]),
  );
  return {
    objects,
    object: (name) => byName.get(name.toLowerCase()),
    objectByKeyPrefix: (prefix) => byPrefix.get(prefix),
    field: (object, name) => fields.get(object)?.get(name.toLowerCase()),
    relationship: (object, name) => relationships.get(object)?.get(name.toLowerCase()),
    keyFields: (object) => keys.get(object) ?? [],
    detailsOf: (object) =>
      objects.flatMap((child) =>
        child.fields
          .filter((f) => f.type.kind === 'reference' && f.type.masterDetail && f.type.to === object.name)
          .map((field) => ({ object: child, field })),
      ),
    lockingReferencesTo: (object) =>
      objects.flatMap((other) =>
        other.lock === undefined
          ? []
          : other.fields
              .filter((f) => f.type.kind === 'reference' && f.type.to === object.name)
              .map((field) => ({ object: other, field })),
      ),
  };
}

/** The record type of an object by id or developer name. */
export function recordTypeOf(object: ObjectSpec, idOrName: string): RecordTypeSpec | undefined {
  return object.recordTypes?.find((rt) => rt.id === idOrName || rt.developerName === idOrName);
}
