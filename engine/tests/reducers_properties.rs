//! Property tests for reducers: folding writes one by one equals folding them as a batch,
//! and the results have the shape each reducer promises.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use engine::Reducer;
use proptest::prelude::*;
use serde_json::{Value, json};

fn small_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(|i| json!(i)),
        "[a-z]{0,6}".prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b))
    ]
}

proptest! {
    #[test]
    fn append_concatenates_in_order(start in prop::collection::vec(small_json(), 0..8), writes in prop::collection::vec(prop::collection::vec(small_json(), 0..4), 0..8)) {
        let mut value = Value::Array(start.clone());
        for w in &writes {
            Reducer::Append.apply(&mut value, Value::Array(w.clone())).unwrap();
        }
        let mut expected = start;
        for w in writes { expected.extend(w); }
        prop_assert_eq!(value, Value::Array(expected));
    }

    #[test]
    fn add_sums_integers(start in -1000i64..1000, writes in prop::collection::vec(-1000i64..1000, 0..20)) {
        let mut value = json!(start);
        for w in &writes {
            Reducer::Add.apply(&mut value, json!(w)).unwrap();
        }
        prop_assert_eq!(value, json!(start + writes.iter().sum::<i64>()));
    }

    #[test]
    fn merge_is_last_writer_wins_per_key(writes in prop::collection::vec(prop::collection::btree_map("[a-d]", any::<i16>(), 0..4), 0..8)) {
        let mut value = json!({});
        let mut expected = serde_json::Map::new();
        for w in &writes {
            let patch: serde_json::Map<String, Value> = w.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            for (k, v) in &patch { expected.insert(k.clone(), v.clone()); }
            Reducer::Merge.apply(&mut value, Value::Object(patch)).unwrap();
        }
        for (k, v) in &expected {
            prop_assert_eq!(&value[k], v);
        }
        prop_assert_eq!(value.as_object().unwrap().len(), expected.len());
    }

    #[test]
    fn messages_replace_by_id_and_append_otherwise(ids in prop::collection::vec(0u8..5, 0..20)) {
        let mut value = json!([]);
        for (n, id) in ids.iter().enumerate() {
            Reducer::Messages.apply(&mut value, json!({"id": format!("m-{id}"), "content": n})).unwrap();
        }
        let list = value.as_array().unwrap();
        let mut distinct: Vec<u8> = Vec::new();
        for id in &ids { if !distinct.contains(id) { distinct.push(*id); } }
        prop_assert_eq!(list.len(), distinct.len());
        // Each message holds the last content written under its id, in first-seen order.
        for (slot, id) in distinct.iter().enumerate() {
            let last = ids.iter().rposition(|x| x == id).unwrap();
            prop_assert_eq!(&list[slot]["content"], &json!(last));
        }
    }

    #[test]
    fn replace_keeps_the_last_write(writes in prop::collection::vec(small_json(), 1..10)) {
        let mut value = Value::Null;
        for w in &writes {
            Reducer::Replace.apply(&mut value, w.clone()).unwrap();
        }
        prop_assert_eq!(&value, writes.last().unwrap());
    }
}

#[test]
fn reducers_refuse_writes_that_do_not_fit() {
    assert!(Reducer::Merge.apply(&mut json!({}), json!(3)).is_err());
    assert!(Reducer::Add.apply(&mut json!(1), json!("x")).is_err());
    assert!(Reducer::Add.apply(&mut json!(i64::MAX), json!(1)).is_err());
    assert!(Reducer::Append.apply(&mut json!("text"), json!(1)).is_err());
}
