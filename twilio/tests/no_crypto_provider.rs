//! Runs in its own process so no test has installed a rustls provider yet.

use secrecy::SecretString;
use voice_agent_twilio::client::{Auth, TwilioClient, TwilioConfig, TwilioError};

#[test]
fn building_a_client_without_a_crypto_provider_is_a_config_error_not_a_panic() {
    let config = TwilioConfig::new(
        "AC00000000000000000000000000000000",
        Auth::AuthToken(SecretString::from("token")),
    );

    let result = TwilioClient::new(config);

    assert!(matches!(result, Err(TwilioError::Config(_))), "{result:?}");
}
