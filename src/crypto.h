// crypto: optional AES-256-GCM encryption of payloads at rest (mbedTLS).
// Stored form: "wfenc1:" + base64(nonce[12] || ciphertext || tag[16]). The
// nonce is a 64-bit random prefix drawn from CTR_DRBG when the cipher is
// created plus a 32-bit counter, so it never repeats under one key within a
// process, and a fresh prefix is drawn before the counter could wrap.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace wf {

class Cipher {
 public:
  // `hex_key`: 64 hex digits (32 bytes). Throws Error(WF_EINVAL) otherwise.
  static std::unique_ptr<Cipher> from_hex(const std::string &hex_key);
  ~Cipher();
  // Encrypts `plain`, binding it to `aad` (the column it belongs in).
  std::string seal(std::string_view plain, std::string_view aad);
  // Decrypts a sealed value; values without the prefix pass through
  // (written before encryption was enabled). Throws Error(WF_ECORRUPT) when
  // authentication fails (wrong key or tampered data).
  std::string open(std::string_view stored, std::string_view aad);
  static bool is_sealed(std::string_view stored);

  struct Impl;

 private:
  Cipher() = default;
  void refresh_prefix();
  std::unique_ptr<Impl> impl_;
  std::mutex mu_;
  unsigned char prefix_[8] = {0};
  uint32_t counter_ = 0;
};

}  // namespace wf
