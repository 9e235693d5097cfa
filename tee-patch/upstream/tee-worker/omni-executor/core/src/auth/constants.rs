// Authentication related constants
pub const AUTH_TOKEN_EXPIRATION_DAYS: u64 = 7; // 1 week
pub const AUTH_TOKEN_ACCESS_TYPE: &str = "access";
pub const AUTH_TOKEN_ID_TYPE: &str = "id";

// Client ID constants for JWT audience
pub const CLIENT_ID_HEIMA: &str = "heima";
pub const CLIENT_ID_PUMPX: &str = "pumpx";
pub const CLIENT_ID_WILDMETA: &str = "wildmeta";
