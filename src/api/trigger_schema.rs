//! `TriggerSpec` is each spec schema joined (`allOf`) with its `type` tag, but every spec schema refuses unknown
//! properties (`additionalProperties: false`), `type` included, so no trigger would validate. Each spec schema
//! therefore lists its own tag(s) among its properties (`and` and `or` share `CombineSpec`). Each variant is
//! then a named schema (`DateTrigger`, …) that `TriggerSpec` refers to: client generators (openapi-python-client)
//! cannot take a union of inline `allOf` members.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{AllOf, Object, Schema, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};

/// The component name of each trigger variant, by its `type` tag.
const VARIANT_NAMES: [(&str, &str); 6] = [
    ("date", "DateTrigger"),
    ("interval", "IntervalTrigger"),
    ("cron", "CronTrigger"),
    ("calendarinterval", "CalendarIntervalTrigger"),
    ("and", "AndTrigger"),
    ("or", "OrTrigger"),
];

pub fn document(spec: &mut OpenApi) {
    tag_spec_schemas(spec);
    name_variants(spec);
}

/// Give each spec schema its `type` tag(s) as a property.
fn tag_spec_schemas(spec: &mut OpenApi) {
    let Some(components) = spec.components.as_mut() else { return };
    let Some(RefOr::T(Schema::OneOf(variants))) = components.schemas.get("TriggerSpec") else { return };
    let mut tags: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for variant in &variants.items {
        let RefOr::T(Schema::AllOf(AllOf { items, .. })) = variant else { continue };
        let [RefOr::Ref(target), RefOr::T(Schema::Object(tag))] = items.as_slice() else { continue };
        let Some(RefOr::T(Schema::Object(tag_property))) = tag.properties.get("type") else { continue };
        let name = target.ref_location.trim_start_matches("#/components/schemas/").to_string();
        tags.entry(name).or_default().extend(tag_property.enum_values.iter().flatten().cloned());
    }
    for (name, values) in tags {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) {
            let mut property = Object::with_type(Type::String);
            property.enum_values = Some(values);
            property.description = Some("The trigger's kind".to_string());
            object.properties.insert("type".to_string(), property.into());
        }
    }
}

/// Move each inline variant of `TriggerSpec` into a component of its own and refer to it.
fn name_variants(spec: &mut OpenApi) {
    let Some(components) = spec.components.as_mut() else { return };
    let Some(RefOr::T(Schema::OneOf(variants))) = components.schemas.get_mut("TriggerSpec") else { return };
    let mut named = Vec::new();
    for variant in variants.items.iter_mut() {
        let RefOr::T(Schema::AllOf(AllOf { items, .. })) = variant else { continue };
        let Some(RefOr::T(Schema::Object(tag))) = items.get(1) else { continue };
        let Some(RefOr::T(Schema::Object(tag_property))) = tag.properties.get("type") else { continue };
        let Some(serde_json::Value::String(kind)) = tag_property.enum_values.iter().flatten().next() else { continue };
        let Some((_, name)) = VARIANT_NAMES.iter().find(|(tag, _)| tag == kind) else { continue };
        let schema = std::mem::replace(variant, RefOr::Ref(Ref::from_schema_name(*name)));
        named.push((name.to_string(), schema));
    }
    components.schemas.extend(named);
}
