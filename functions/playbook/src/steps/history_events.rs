//! Execution history events as Step Functions reports them, for the tests
//! of what reads a history (status, the approval gate, the approval URL).
//! The unit tests declare it; the integration tests include it by path.

use aws_sdk_sfn::types::{
    HistoryEvent, HistoryEventType, StateEnteredEventDetails, StateExitedEventDetails,
    TaskScheduledEventDetails,
};
use aws_smithy_types::DateTime;

fn event(id: i64, kind: HistoryEventType) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
    HistoryEvent::builder()
        .id(id)
        .r#type(kind)
        .timestamp(DateTime::from_secs(id))
}

/// A task state `name` entered.
pub fn entered(id: i64, name: &str) -> HistoryEvent {
    event(id, HistoryEventType::TaskStateEntered)
        .state_entered_event_details(
            StateEnteredEventDetails::builder()
                .name(name)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A task state `name` exited, with its output when given.
pub fn exited(id: i64, name: &str, output: Option<&str>) -> HistoryEvent {
    event(id, HistoryEventType::TaskStateExited)
        .state_exited_event_details(
            StateExitedEventDetails::builder()
                .name(name)
                .set_output(output.map(str::to_owned))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A callback task scheduled with `parameters` (its resolved JSON).
pub fn scheduled(id: i64, parameters: &serde_json::Value) -> HistoryEvent {
    event(id, HistoryEventType::TaskScheduled)
        .task_scheduled_event_details(
            TaskScheduledEventDetails::builder()
                .resource_type("lambda")
                .resource("invoke.waitForTaskToken")
                .region("us-east-1")
                .parameters(parameters.to_string())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// The execution failed.
pub fn failed(id: i64) -> HistoryEvent {
    event(id, HistoryEventType::ExecutionFailed)
        .execution_failed_event_details(
            aws_sdk_sfn::types::ExecutionFailedEventDetails::builder()
                .error("X")
                .build(),
        )
        .build()
        .unwrap()
}
