package signature

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Envelopes written by go-securesystemslib's encrypted package (the code inside cosign), one
// per scrypt strength it knows, passphrase "supersecret". "raw" holds the bytes
// "reallyimportant"; the others hold them JSON-encoded (its Marshal), as "cmVhbGx5aW1wb3J0YW50".
var envelopeVectors = map[string]string{
	"raw":      `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}`,
	"legacy":   `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}`,
	"standard": `{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}`,
	"owasp":    `{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}`,
}

func TestDecryptKnownEnvelopes(t *testing.T) {
	for name, v := range envelopeVectors {
		t.Run(name, func(t *testing.T) {
			got, err := decrypt([]byte(v), []byte("supersecret"))
			if err != nil {
				t.Fatal(err)
			}
			want := `"cmVhbGx5aW1wb3J0YW50"`
			if name == "raw" {
				want = "reallyimportant"
			}
			if string(got) != want {
				t.Fatalf("decrypted %q, want %q", got, want)
			}
			if name != "raw" {
				return // one wrong-passphrase check is enough: scrypt is slow on purpose
			}
			if _, err := decrypt([]byte(v), []byte("supersecreT")); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase: %v, want ErrWrongPassphrase", err)
			}
		})
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	for _, pass := range []string{"", "correct horse battery staple"} { // COSIGN_PASSWORD may be empty
		plain := []byte("a PKCS #8 key would be here")
		enc, err := encrypt(plain, []byte(pass))
		if err != nil {
			t.Fatal(err)
		}
		// The envelope has exactly cosign's shape and parameters.
		for _, want := range []string{`"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"`, `"cipher":{"name":"nacl/secretbox","nonce":"`, `"ciphertext":"`} {
			if !strings.Contains(string(enc), want) {
				t.Fatalf("envelope %s lacks %s", enc, want)
			}
		}
		got, err := decrypt(enc, []byte(pass))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("decrypt(encrypt()) = %q, %v", got, err)
		}
		if _, err := decrypt(enc, []byte(pass+"x")); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("wrong passphrase: %v", err)
		}
		if pass == "" {
			continue // scrypt is slow on purpose: the checks below once are enough
		}
		// A flipped ciphertext bit is caught by secretbox's authenticator.
		var e envelope
		json.Unmarshal(enc, &e)
		e.Ciphertext[3] ^= 1
		bad, _ := json.Marshal(e)
		if _, err := decrypt(bad, []byte(pass)); err == nil {
			t.Fatal("a damaged ciphertext decrypted")
		}
	}
}

func TestDecryptRefusesOddEnvelopes(t *testing.T) {
	legacy := envelopeVectors["legacy"]
	cases := map[string]string{
		"huge N":       strings.Replace(legacy, `"N":32768`, `"N":1073741824`, 1),
		"odd r":        strings.Replace(legacy, `"r":8`, `"r":1`, 1),
		"other kdf":    strings.Replace(legacy, `"scrypt"`, `"pbkdf2"`, 1),
		"other cipher": strings.Replace(legacy, `nacl/secretbox`, `aes-gcm`, 1),
		"short nonce":  strings.Replace(legacy, `tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX`, `tCy7HcTFr4uxv4Nr`, 1),
		"no salt":      strings.Replace(legacy, `WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA=`, ``, 1),
		"short box":    strings.Replace(legacy, `08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw=`, `08n4`, 1),
		"not json":     `{"kdf":`,
	}
	for name, c := range cases {
		if _, err := decrypt([]byte(c), []byte("supersecret")); err == nil || errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s: got %v, want an error naming the problem", name, err)
		}
	}
}

// FuzzDecrypt: whatever the envelope, decrypt returns an error or the plaintext, never panics,
// and never runs scrypt with parameters outside the known sets.
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte(envelopeVectors["raw"]))
	f.Add([]byte(`{"kdf":{"name":"scrypt","params":{"N":0,"r":0,"p":0}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decrypt(data, []byte("supersecret"))
	})
}
