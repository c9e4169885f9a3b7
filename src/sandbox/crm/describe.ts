import type { FieldSpec, ObjectSpec, Schema } from './schema.ts';
import { maxLength } from './values.ts';

/** Describe results built from the schema (the subset of Salesforce's shape clients read). */

function objectUrls(version: string, object: ObjectSpec): Record<string, string> {
  const base = `/services/data/${version}/sobjects/${object.name}`;
  return { sobject: base, describe: `${base}/describe`, rowTemplate: `${base}/{ID}` };
}

export function describeGlobal(schema: Schema, version: string): unknown {
  return {
    encoding: 'UTF-8',
    maxBatchSize: 200,
    sobjects: schema.objects.map((o) => ({
      name: o.name,
      label: o.label,
      keyPrefix: o.keyPrefix,
      custom: o.custom,
      createable: true,
      updateable: true,
      deletable: true,
      queryable: true,
      urls: objectUrls(version, o),
    })),
  };
}

export function describeField(field: FieldSpec): Record<string, unknown> {
  const type = field.type;
  const kind = type.kind === 'recordType' ? 'reference' : type.kind;
  const writable = !field.readOnly;
  const isPicklist = type.kind === 'picklist';
  return {
    name: field.name,
    label: field.label,
    type: kind,
    length: maxLength(field) ?? 0,
    precision: type.kind === 'double' ? type.precision : type.kind === 'int' ? type.digits : 0,
    scale: type.kind === 'double' ? type.scale : 0,
    nillable: !field.required && type.kind !== 'boolean' && field.name !== 'Id',
    createable: writable,
    updateable: writable && !(type.kind === 'reference' && type.masterDetail),
    defaultedOnCreate: type.kind === 'boolean' || Boolean(field.autoNumber),
    externalId: Boolean(field.externalId),
    unique: Boolean(field.unique),
    caseSensitive: Boolean(field.caseSensitive),
    idLookup: field.name === 'Id' || Boolean(field.externalId),
    filterable: type.kind !== 'textarea',
    calculated: field.name === 'IsPersonAccount',
    restrictedPicklist: isPicklist && type.restricted,
    picklistValues: isPicklist
      ? type.values.map((value) => ({ value, label: value, active: true, defaultValue: false }))
      : [],
    referenceTo: type.kind === 'reference' ? [type.to] : type.kind === 'recordType' ? ['RecordType'] : [],
    relationshipName:
      type.kind === 'reference' ? type.relationshipName : type.kind === 'recordType' ? 'RecordType' : null,
    cascadeDelete: type.kind === 'reference' && Boolean(type.masterDetail),
    relationshipOrder: type.kind === 'reference' && type.masterDetail ? 0 : null,
  };
}

export function describeObject(object: ObjectSpec, version: string): unknown {
  const defaultType = object.defaultRecordType;
  return {
    name: object.name,
    label: object.label,
    keyPrefix: object.keyPrefix,
    custom: object.custom,
    createable: true,
    updateable: true,
    deletable: true,
    queryable: true,
    fields: object.fields.map(describeField),
    recordTypeInfos: (object.recordTypes ?? []).map((rt) => ({
      recordTypeId: rt.id,
      developerName: rt.developerName,
      name: rt.label,
      available: true,
      active: true,
      master: false,
      defaultRecordTypeMapping: rt.developerName === defaultType,
    })),
    urls: objectUrls(version, object),
  };
}
