"""config.crypto: secrets encrypted at rest with one derived key per purpose."""

from __future__ import annotations

from config import crypto
from gateway import crypto as gateway_crypto


def test_it_round_trips_and_never_stores_the_plaintext():
    token = crypto.encrypt("whsec_abc", purpose="webhook-signing-secret")
    assert "whsec_abc" not in token
    assert crypto.decrypt(token, purpose="webhook-signing-secret") == "whsec_abc"


def test_a_ciphertext_of_one_purpose_does_not_decrypt_as_another():
    token = crypto.encrypt("whsec_abc", purpose="webhook-signing-secret")
    assert crypto.decrypt(token, purpose="provider-api-key") == ""


def test_another_field_encryption_key_reads_nothing(settings):
    token = crypto.encrypt("whsec_abc", purpose="webhook-signing-secret")
    settings.FIELD_ENCRYPTION_KEY = "another key"
    assert crypto.decrypt(token, purpose="webhook-signing-secret") == ""


def test_it_reads_what_gateway_crypto_wrote_so_the_gateway_can_switch_to_it():
    token = gateway_crypto.encrypt("sk-provider")
    assert crypto.decrypt(token, purpose="provider-api-key") == "sk-provider"
    assert gateway_crypto.decrypt(crypto.encrypt("sk-provider", purpose="provider-api-key")) == "sk-provider"
