pub mod auth_token;
pub mod constants;
pub mod web3;
