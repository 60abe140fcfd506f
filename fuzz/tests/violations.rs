//! Each lie of the hostile controller, told to the first admin command of
//! bring-up, ends bring-up with the typed violation it is, never with the
//! wrong request completed: what the README says the driver does.

use vfio_fuzz::hostile_nvme::{Twist, bring_up_with};

fn violation(twist: Twist) -> nvme::Violation {
    match bring_up_with(&[twist]) {
        Err(nvme::NvmeError::Protocol { qid: 0, violation }) => violation,
        other => panic!("{twist:?}: want a protocol violation on the admin queue, got {other:?}"),
    }
}

#[test]
fn an_honest_controller_comes_up() {
    bring_up_with(&[]).expect("bring-up on an honest controller");
}

#[test]
fn a_completion_for_a_command_never_sent_is_an_unknown_cid() {
    assert_eq!(
        violation(Twist::WrongCid(0x7777)),
        nvme::Violation::UnknownCid { cid: 0x7777 }
    );
}

// The controller takes the lied SQ head modulo twice the queue's entries
// (the admin queue has 32): 40 lies outside the queue, 8 inside it but
// past the one command submitted.
#[test]
fn an_sq_head_outside_the_queue_is_out_of_range() {
    let v = violation(Twist::SqHead(40));
    assert!(
        matches!(v, nvme::Violation::SqHeadOutOfRange { sq_head: 40, .. }),
        "{v:?}"
    );
}

#[test]
fn an_sq_head_past_what_was_submitted_is_not_consumed() {
    assert_eq!(
        violation(Twist::SqHead(8)),
        nvme::Violation::SqHeadNotConsumed {
            sq_head: 8,
            head: 0,
            tail: 1
        }
    );
}

#[test]
fn a_completion_naming_another_queue_is_a_wrong_sq_id() {
    assert_eq!(
        violation(Twist::SqId(9)),
        nvme::Violation::WrongSqId { sq_id: 9 }
    );
}

#[test]
fn a_second_completion_of_one_command_is_a_duplicate_cid() {
    let v = violation(Twist::Twice);
    assert!(matches!(v, nvme::Violation::DuplicateCid { .. }), "{v:?}");
}
