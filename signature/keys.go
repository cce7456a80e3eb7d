package signature

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// PEM block types of private keys, as cosign names them. cosign writes SigstorePEMType since
// v2 and reads both.
const (
	SigstorePEMType = "ENCRYPTED SIGSTORE PRIVATE KEY"
	CosignPEMType   = "ENCRYPTED COSIGN PRIVATE KEY"
	PublicPEMType   = "PUBLIC KEY"
)

// ErrKeyType is wrapped by every error about a key that is not ECDSA P-256.
var ErrKeyType = errors.New("not an ECDSA P-256 key")

// ErrNotKey is matched (errors.Is) by errors about a file that holds no key of the kind
// asked for.
var ErrNotKey = errors.New("not the kind of key asked for")

// notKeyError says what the file holds instead; it is ErrNotKey without repeating it.
type notKeyError string

func (e notKeyError) Error() string        { return string(e) }
func (e notKeyError) Is(target error) bool { return target == ErrNotKey }

func notKey(format string, args ...any) error { return notKeyError(fmt.Sprintf(format, args...)) }

// ErrExpired is wrapped when the public key comes in a certificate that is not valid now.
var ErrExpired = errors.New("key certificate is not valid now")

// keyTypeError names what the key is, so that the message says what to do instead.
func keyTypeError(k any) error {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Errorf("an RSA key (%d bits): %w: make one with \"rehydrator keygen\"", k.N.BitLen(), ErrKeyType)
	case *rsa.PublicKey:
		return fmt.Errorf("an RSA key (%d bits): %w: make one with \"rehydrator keygen\"", k.N.BitLen(), ErrKeyType)
	case ed25519.PrivateKey, ed25519.PublicKey:
		return fmt.Errorf("an ed25519 key: %w: make one with \"rehydrator keygen\"", ErrKeyType)
	case *ecdsa.PrivateKey:
		return fmt.Errorf("an ECDSA key on curve %s: %w: make one with \"rehydrator keygen\"", k.Curve.Params().Name, ErrKeyType)
	case *ecdsa.PublicKey:
		return fmt.Errorf("an ECDSA key on curve %s: %w: make one with \"rehydrator keygen\"", k.Curve.Params().Name, ErrKeyType)
	}
	return fmt.Errorf("a %T: %w: make one with \"rehydrator keygen\"", k, ErrKeyType)
}

// GenerateKey makes a new ECDSA P-256 key, the kind cosign generate-key-pair makes.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// MarshalPrivateKey encodes key as cosign does: PKCS #8, encrypted under passphrase (which may
// be empty), in an ENCRYPTED SIGSTORE PRIVATE KEY PEM block.
func MarshalPrivateKey(key *ecdsa.PrivateKey, passphrase []byte) ([]byte, error) {
	if key.Curve != elliptic.P256() {
		return nil, keyTypeError(key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	enc, err := encrypt(der, passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: SigstorePEMType, Bytes: enc}), nil
}

// MarshalPublicKey encodes pub as a PKIX PUBLIC KEY PEM block, like cosign.pub.
func MarshalPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PublicPEMType, Bytes: der}), nil
}

// IsEncrypted reports whether data is a private key that needs a passphrase.
func IsEncrypted(data []byte) bool {
	b, _ := pem.Decode(data)
	return b != nil && (b.Type == SigstorePEMType || b.Type == CosignPEMType)
}

// ParsePrivateKey reads an ECDSA P-256 private key: cosign's encrypted PEM (either block
// type), or a plain PKCS #8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY" block. passphrase is
// called only for an encrypted key.
func ParsePrivateKey(data []byte, passphrase func() ([]byte, error)) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, notKey("not a PEM file: want a private key such as cosign.key")
	}
	var key any
	var err error
	switch b.Type {
	case SigstorePEMType, CosignPEMType:
		pass, perr := passphrase()
		if perr != nil {
			return nil, perr
		}
		der, derr := decrypt(b.Bytes, pass)
		if derr != nil {
			return nil, derr
		}
		// cosign stores PKCS #8; some old cosign keys hold SEC 1 instead.
		if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			key, err = x509.ParseECPrivateKey(der)
		}
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		return nil, fmt.Errorf("an RSA key: %w: make one with \"rehydrator keygen\"", ErrKeyType)
	case "OPENSSH PRIVATE KEY":
		return nil, fmt.Errorf("an OpenSSH key: %w: make one with \"rehydrator keygen\"", ErrKeyType)
	case PublicPEMType, "CERTIFICATE":
		return nil, notKey("a public key, not a private key: give the .key file, not the .pub")
	default:
		return nil, notKey("PEM block %q is no private key: want one such as cosign.key", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, keyTypeError(key)
	}
	return ec, nil
}

// ParsePublicKey reads an ECDSA P-256 public key from a PKIX PUBLIC KEY block (cosign.pub) or
// from a CERTIFICATE, which must be valid at now: an expired certificate is refused.
func ParsePublicKey(data []byte, now time.Time) (*ecdsa.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, notKey("not a PEM file: want a public key such as cosign.pub")
	}
	var key any
	switch b.Type {
	case PublicPEMType:
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		key = k
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		if now.Before(c.NotBefore) {
			return nil, fmt.Errorf("certificate %q is valid only from %s: %w", c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339), ErrExpired)
		}
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("certificate %q expired on %s: %w: get the current key", c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
		}
		key = c.PublicKey
	case SigstorePEMType, CosignPEMType, "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return nil, notKey("a private key, not a public key: give the .pub file (and never hand out the .key)")
	default:
		return nil, notKey("PEM block %q is no public key: want one such as cosign.pub", b.Type)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, keyTypeError(key)
	}
	return ec, nil
}
