package signature

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// The envelope cosign (through go-securesystemslib's "encrypted" package) puts inside an
// ENCRYPTED SIGSTORE PRIVATE KEY block:
//
//	{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
//	 "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},
//	 "ciphertext":"<base64>"}
//
// The key for secretbox is scrypt(passphrase, salt, N, r, p) with 32 bytes of output.
type envelope struct {
	KDF struct {
		Name   string       `json:"name"`
		Params scryptParams `json:"params"`
		Salt   []byte       `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

type scryptParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

const (
	kdfScrypt       = "scrypt"
	cipherSecretbox = "nacl/secretbox"
	saltLen         = 32
	nonceLen        = 24
	keyLen          = 32
)

// writeParams are what cosign generate-key-pair writes.
var writeParams = scryptParams{N: 32768, R: 8, P: 1}

// readParams are the parameter sets go-securesystemslib accepts (its legacy, standard and
// OWASP strengths). Anything else is refused rather than run: N and r decide how much memory
// scrypt takes (128*N*r bytes), and a key file must not make us allocate gigabytes.
var readParams = []scryptParams{{32768, 8, 1}, {65536, 8, 1}, {131072, 8, 1}}

// ErrWrongPassphrase is returned when an encrypted key does not open with the passphrase.
var ErrWrongPassphrase = errors.New("wrong passphrase")

func encrypt(plaintext, passphrase []byte) ([]byte, error) {
	var e envelope
	e.KDF.Name, e.KDF.Params = kdfScrypt, writeParams
	e.KDF.Salt = make([]byte, saltLen)
	e.Cipher.Name = cipherSecretbox
	e.Cipher.Nonce = make([]byte, nonceLen)
	if _, err := rand.Read(e.KDF.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(e.Cipher.Nonce); err != nil {
		return nil, err
	}
	key, err := deriveKey(passphrase, e.KDF.Salt, e.KDF.Params)
	if err != nil {
		return nil, err
	}
	var nonce [nonceLen]byte
	copy(nonce[:], e.Cipher.Nonce)
	e.Ciphertext = secretbox.Seal(nil, plaintext, &nonce, key)
	return json.Marshal(e)
}

func decrypt(data, passphrase []byte) ([]byte, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("encrypted key: not cosign's JSON envelope: %w", err)
	}
	if e.KDF.Name != kdfScrypt {
		return nil, fmt.Errorf("encrypted key: key derivation %q, want %q", e.KDF.Name, kdfScrypt)
	}
	if e.Cipher.Name != cipherSecretbox {
		return nil, fmt.Errorf("encrypted key: cipher %q, want %q", e.Cipher.Name, cipherSecretbox)
	}
	known := false
	for _, p := range readParams {
		known = known || p == e.KDF.Params
	}
	if !known {
		p := e.KDF.Params
		return nil, fmt.Errorf("encrypted key: unsupported scrypt parameters N=%d r=%d p=%d (cosign writes N=32768 r=8 p=1)", p.N, p.R, p.P)
	}
	if len(e.KDF.Salt) == 0 {
		return nil, errors.New("encrypted key: no salt")
	}
	if len(e.Cipher.Nonce) != nonceLen {
		return nil, fmt.Errorf("encrypted key: nonce of %d bytes, want %d", len(e.Cipher.Nonce), nonceLen)
	}
	if len(e.Ciphertext) < secretbox.Overhead {
		return nil, fmt.Errorf("encrypted key: ciphertext of %d bytes is too short", len(e.Ciphertext))
	}
	key, err := deriveKey(passphrase, e.KDF.Salt, e.KDF.Params)
	if err != nil {
		return nil, err
	}
	var nonce [nonceLen]byte
	copy(nonce[:], e.Cipher.Nonce)
	plain, ok := secretbox.Open(nil, e.Ciphertext, &nonce, key)
	if !ok {
		// secretbox authenticates: a wrong passphrase and a damaged file look the same.
		return nil, ErrWrongPassphrase
	}
	return plain, nil
}

func deriveKey(passphrase, salt []byte, p scryptParams) (*[keyLen]byte, error) {
	k, err := scrypt.Key(passphrase, salt, p.N, p.R, p.P, keyLen)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: scrypt: %w", err)
	}
	var key [keyLen]byte
	copy(key[:], k)
	return &key, nil
}
