//! The product's grpcurl examples are proto3 JSON: parsed with the descriptors the server
//! serves over reflection (as grpcurl does), they become the messages the service expects.
#![allow(clippy::unwrap_used)]

use ledger_server::pb;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

fn from_json<M: Message + Default>(full_name: &str, json: &str) -> M {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let descriptor = pool.get_message_by_name(full_name).unwrap();
    let mut de = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut de).unwrap();
    M::decode(dynamic.encode_to_vec().as_slice()).unwrap()
}

#[test]
fn the_readme_examples_map_to_the_v1_messages() {
    let req: pb::SubmitOperationRequest = from_json(
        "roda.ledger.v1.SubmitOperationRequest",
        r#"{"deposit": {"account": 1, "amount": "1000", "user_ref": "123"}}"#,
    );
    assert_eq!(
        req.operation,
        Some(pb::submit_operation_request::Operation::Deposit(
            pb::Deposit {
                account: 1,
                amount: 1000,
                user_ref: 123,
            }
        ))
    );
    let req: pb::GetBalanceRequest =
        from_json("roda.ledger.v1.GetBalanceRequest", r#"{"account_id": 1}"#);
    assert_eq!(req.account_id, 1);
    let req: pb::SubmitAndWaitRequest = from_json(
        "roda.ledger.v1.SubmitAndWaitRequest",
        r#"{"transfer": {"from": "1", "to": 2, "amount": "5"}, "wait_level": "WAIT_LEVEL_COMMITTED"}"#,
    );
    assert_eq!(req.wait_level, i32::from(pb::WaitLevel::Committed));
}
