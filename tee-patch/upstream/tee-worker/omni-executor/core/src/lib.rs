// Copyright 2020-2024 Trust Computing GmbH.
// This file is part of Litentry.
//
// Litentry is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Litentry is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Litentry.  If not, see <https://www.gnu.org/licenses/>.

pub mod aes256_key_store;
pub mod auth;
pub mod config;
pub mod ecdsa_key_store;
pub mod ed25519_key_store;
pub mod event_handler;
pub mod fetcher;
pub mod intent;
pub mod key_store;
pub mod listener;
pub mod native_task;
pub mod oauth;
pub mod shielding_key_store;
pub mod sync_checkpoint_repository;
pub mod types;
pub mod verify;
pub mod wallet_metrics;

pub use aes256_key_store::Aes256KeyStore;
