//! The lambda backend's AWS control plane (UpdateFunctionConfiguration, then waiting for
//! `LastUpdateStatus`) against moto's Lambda API, which keeps function configurations but runs no
//! code. moto finishes every update at once, so the wait for an update in progress is not
//! exercised here.
//!
//! One test in this binary: it sets the AWS credentials in the process environment, which the
//! SDK's default chain reads, and that is only sound while no other test thread runs.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use siren_crds::LambdaSpec;
use siren_driver::backend::{AwsLambdaControl, LambdaControl, lambda_client};
use siren_e2e::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};

#[test]
fn memory_changes_go_through_update_function_configuration() {
    // SAFETY: the only test of this binary, run before any other thread of it exists.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
    }
    let moto = S3Server::start(&[]);
    let role = moto.create_lambda_role("siren-function");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = lambda_client(&LambdaSpec {
            function_name: "siren".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(moto.endpoint()),
        })
        .await;
        client
            .create_function()
            .function_name("siren")
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .memory_size(1024)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(b"the bundle".to_vec()))
                    .build(),
            )
            .send()
            .await
            .expect("create the function");
        let memory = || async {
            client
                .get_function_configuration()
                .function_name("siren")
                .send()
                .await
                .expect("configuration")
                .memory_size()
        };

        let control = AwsLambdaControl::new(client.clone(), "siren");
        control.set_memory(3538).await.expect("set memory");
        assert_eq!(memory().await, Some(3538));
        // Asking for the size it has already changes nothing and succeeds.
        control.set_memory(3538).await.expect("set memory again");
        assert_eq!(memory().await, Some(3538));

        let missing = AwsLambdaControl::new(client, "no-such-function");
        let error = missing
            .set_memory(2048)
            .await
            .expect_err("no function to configure")
            .to_string();
        assert!(error.contains("no-such-function"), "{error}");
        assert!(error.contains("ResourceNotFound"), "{error}");
    });
}
