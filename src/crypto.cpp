#include "crypto.h"

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>

#include <cstring>
#include <vector>

#include "util.h"

namespace wf {

namespace {
constexpr char kPrefix[] = "wfenc1:";
constexpr size_t kPrefixLen = sizeof kPrefix - 1;
constexpr size_t kNonce = 12, kTag = 16;

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

struct Cipher::Impl {
  mbedtls_gcm_context gcm;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  Impl() {
    mbedtls_gcm_init(&gcm);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
  }
  ~Impl() {
    mbedtls_gcm_free(&gcm);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
  }
};

Cipher::~Cipher() = default;

bool Cipher::is_sealed(std::string_view stored) {
  return stored.size() >= kPrefixLen && stored.compare(0, kPrefixLen, kPrefix) == 0;
}

std::unique_ptr<Cipher> Cipher::from_hex(const std::string &hex_key) {
  if (hex_key.size() != 64)
    fail(WF_EINVAL, "options: \"encryption_key\" must be 64 hex digits (32 bytes)");
  unsigned char key[32];
  for (size_t i = 0; i < 32; ++i) {
    int hi = hexval(hex_key[2 * i]), lo = hexval(hex_key[2 * i + 1]);
    if (hi < 0 || lo < 0) fail(WF_EINVAL, "options: \"encryption_key\" must be hex digits");
    key[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  std::unique_ptr<Cipher> c(new Cipher());
  c->impl_ = std::make_unique<Impl>();
  static const char pers[] = "wfengine payload nonces";
  if (mbedtls_ctr_drbg_seed(&c->impl_->drbg, mbedtls_entropy_func, &c->impl_->entropy,
                            reinterpret_cast<const unsigned char *>(pers), sizeof pers - 1) != 0)
    fail(WF_EINTERNAL, "crypto: cannot seed the random generator");
  int rc = mbedtls_gcm_setkey(&c->impl_->gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
  mbedtls_platform_zeroize(key, sizeof key);
  if (rc != 0) fail(WF_EINTERNAL, "crypto: cannot set the AES-256-GCM key");
  c->refresh_prefix();
  return c;
}

void Cipher::refresh_prefix() {
  if (mbedtls_ctr_drbg_random(&impl_->drbg, prefix_, sizeof prefix_) != 0)
    fail(WF_EINTERNAL, "crypto: random generator failed");
  counter_ = 0;
}

std::string Cipher::seal(std::string_view plain, std::string_view aad) {
  std::vector<unsigned char> buf(kNonce + plain.size() + kTag);
  {
    std::lock_guard<std::mutex> g(mu_);
    if (counter_ == UINT32_MAX) refresh_prefix();
    uint32_t n = ++counter_;
    std::memcpy(buf.data(), prefix_, 8);
    for (int i = 0; i < 4; ++i) buf[8 + i] = static_cast<unsigned char>(n >> (24 - 8 * i));
    int rc =
        mbedtls_gcm_crypt_and_tag(&impl_->gcm, MBEDTLS_GCM_ENCRYPT, plain.size(), buf.data(),
                                  kNonce, reinterpret_cast<const unsigned char *>(aad.data()),
                                  aad.size(), reinterpret_cast<const unsigned char *>(plain.data()),
                                  buf.data() + kNonce, kTag, buf.data() + kNonce + plain.size());
    if (rc != 0) fail(WF_EINTERNAL, "crypto: encryption failed");
  }
  size_t olen = 0;
  mbedtls_base64_encode(nullptr, 0, &olen, buf.data(), buf.size());
  std::string out(kPrefix);
  out.resize(kPrefixLen + olen);
  if (mbedtls_base64_encode(reinterpret_cast<unsigned char *>(out.data() + kPrefixLen), olen, &olen,
                            buf.data(), buf.size()) != 0)
    fail(WF_EINTERNAL, "crypto: encoding failed");
  out.resize(kPrefixLen + olen);
  return out;
}

std::string Cipher::open(std::string_view stored, std::string_view aad) {
  if (!is_sealed(stored)) return std::string(stored);
  const unsigned char *b64 = reinterpret_cast<const unsigned char *>(stored.data() + kPrefixLen);
  size_t b64len = stored.size() - kPrefixLen, olen = 0;
  std::vector<unsigned char> buf(b64len);
  if (mbedtls_base64_decode(buf.data(), buf.size(), &olen, b64, b64len) != 0 ||
      olen < kNonce + kTag)
    fail(WF_ECORRUPT, "encrypted value is malformed");
  size_t n = olen - kNonce - kTag;
  std::string out(n, '\0');
  int rc;
  {
    std::lock_guard<std::mutex> g(mu_);
    rc = mbedtls_gcm_auth_decrypt(&impl_->gcm, n, buf.data(), kNonce,
                                  reinterpret_cast<const unsigned char *>(aad.data()), aad.size(),
                                  buf.data() + kNonce + n, kTag, buf.data() + kNonce,
                                  reinterpret_cast<unsigned char *>(out.data()));
  }
  if (rc != 0)
    fail(WF_ECORRUPT,
         "cannot decrypt a stored value: wrong encryption_key or the data was altered");
  return out;
}

}  // namespace wf
