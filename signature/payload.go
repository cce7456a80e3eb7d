package signature

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// PayloadType is the "critical.type" of a sigstore simple-signing payload.
const PayloadType = "cosign container image signature"

// Payload is what a signature vouches for: the image with manifest digest Digest, published
// as Identity (a docker reference without tag, e.g. "registry.example/fcos-images").
// Creator and Timestamp are optional, informational fields.
type Payload struct {
	Identity  string
	Digest    string
	Creator   string
	Timestamp int64 // Unix seconds; 0 leaves it out
}

type wirePayload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Marshal encodes p in the layout cosign writes (critical fields in alphabetical order).
func (p Payload) Marshal() ([]byte, error) {
	if p.Identity == "" {
		return nil, errors.New("signature payload: no identity")
	}
	if !digestRE.MatchString(p.Digest) {
		return nil, fmt.Errorf("signature payload: %q is not a sha256:<hex> digest", p.Digest)
	}
	var w wirePayload
	w.Critical.Identity.DockerReference = p.Identity
	w.Critical.Image.DockerManifestDigest = p.Digest
	w.Critical.Type = PayloadType
	if p.Creator != "" || p.Timestamp != 0 {
		w.Optional = map[string]any{}
		if p.Creator != "" {
			w.Optional["creator"] = p.Creator
		}
		if p.Timestamp != 0 {
			w.Optional["timestamp"] = p.Timestamp
		}
	}
	return json.Marshal(w)
}

// ParsePayload decodes a simple-signing payload as strictly as containers/image does: the
// critical part must hold exactly type, image and identity, with the known type, so that a
// payload rehydrator accepts is one podman accepts too. Unknown optional fields are allowed.
func ParsePayload(data []byte) (*Payload, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("signature payload: %w", err)
	}
	if err := exactKeys(top, "critical", "optional"); err != nil {
		return nil, fmt.Errorf("signature payload: %w", err)
	}
	var critical map[string]json.RawMessage
	if err := json.Unmarshal(top["critical"], &critical); err != nil {
		return nil, fmt.Errorf("signature payload: critical: %w", err)
	}
	if err := exactKeys(critical, "type", "image", "identity"); err != nil {
		return nil, fmt.Errorf("signature payload: critical: %w", err)
	}
	var typ string
	if err := json.Unmarshal(critical["type"], &typ); err != nil || typ != PayloadType {
		return nil, fmt.Errorf("signature payload: critical.type is %s, want %q", critical["type"], PayloadType)
	}
	var p Payload
	if err := exactString(critical["image"], "docker-manifest-digest", &p.Digest); err != nil {
		return nil, fmt.Errorf("signature payload: critical.image: %w", err)
	}
	if !digestRE.MatchString(p.Digest) {
		return nil, fmt.Errorf("signature payload: docker-manifest-digest %q is not a sha256:<hex> digest", p.Digest)
	}
	if err := exactString(critical["identity"], "docker-reference", &p.Identity); err != nil {
		return nil, fmt.Errorf("signature payload: critical.identity: %w", err)
	}
	if opt := top["optional"]; !bytes.Equal(bytes.TrimSpace(opt), []byte("null")) {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(opt, &o); err != nil {
			return nil, fmt.Errorf("signature payload: optional: %w", err)
		}
		if c, ok := o["creator"]; ok {
			if err := json.Unmarshal(c, &p.Creator); err != nil {
				return nil, fmt.Errorf("signature payload: optional.creator: %w", err)
			}
		}
		if ts, ok := o["timestamp"]; ok {
			var f float64
			if err := json.Unmarshal(ts, &f); err != nil || f != float64(int64(f)) {
				return nil, fmt.Errorf("signature payload: optional.timestamp %s is not an integer", ts)
			}
			p.Timestamp = int64(f)
		}
	}
	return &p, nil
}

func exactKeys(m map[string]json.RawMessage, keys ...string) error {
	if m == nil {
		return errors.New("not a JSON object")
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("no %q field", k)
		}
	}
	if len(m) != len(keys) {
		for k := range m {
			found := false
			for _, want := range keys {
				found = found || k == want
			}
			if !found {
				return fmt.Errorf("unknown field %q", k)
			}
		}
	}
	return nil
}

func exactString(raw json.RawMessage, key string, dst *string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if err := exactKeys(m, key); err != nil {
		return err
	}
	if err := json.Unmarshal(m[key], dst); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// Signed is one stored signature: the payload bytes exactly as signed, and the base64 ASN.1
// ECDSA signature over their SHA-256 (cosign's dev.cosignproject.cosign/signature annotation).
type Signed struct {
	Payload   []byte
	Signature string
}

// Sign signs p with key.
func Sign(key *ecdsa.PrivateKey, p Payload) (Signed, error) {
	payload, err := p.Marshal()
	if err != nil {
		return Signed{}, err
	}
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return Signed{}, fmt.Errorf("sign: %w", err)
	}
	return Signed{Payload: payload, Signature: base64.StdEncoding.EncodeToString(sig)}, nil
}

// ErrBadSignature: the signature does not verify with the key (another key made it, or the
// payload or signature was altered).
var ErrBadSignature = errors.New("signature does not verify with the key")

// VerifiedBy reports whether s is a valid signature of its payload by pub.
func (s Signed) VerifiedBy(pub *ecdsa.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	sum := sha256.Sum256(s.Payload)
	if !ecdsa.VerifyASN1(pub, sum[:], sig) {
		return ErrBadSignature
	}
	return nil
}

// Errors of Check, one per way an image's signatures can fail.
var (
	ErrNoSignature = errors.New("the image has no signature")
	ErrUnknownKey  = errors.New("no signature of the image verifies with this key")
	ErrOtherDigest = errors.New("the signature is for another image")
)

// Check finds a signature among sigs that pub made over a payload for the image with manifest
// digest, and returns that payload. When none qualifies the error says why, preferring the
// most telling reason: a valid signature for another digest beats a signature by another key.
func Check(pub *ecdsa.PublicKey, digest string, sigs []Signed) (*Payload, error) {
	if len(sigs) == 0 {
		return nil, ErrNoSignature
	}
	var other *Payload
	var bad error
	for _, s := range sigs {
		if err := s.VerifiedBy(pub); err != nil {
			bad = err
			continue
		}
		p, err := ParsePayload(s.Payload)
		if err != nil {
			bad = err
			continue
		}
		if p.Digest != digest {
			other = p
			continue
		}
		return p, nil
	}
	if other != nil {
		return nil, fmt.Errorf("%w: it signs %s (%s), not %s", ErrOtherDigest, other.Digest, other.Identity, digest)
	}
	if errors.Is(bad, ErrBadSignature) {
		return nil, fmt.Errorf("%w (%d signature(s) there: made with another key, or altered)", ErrUnknownKey, len(sigs))
	}
	return nil, fmt.Errorf("%w: %v", ErrUnknownKey, bad)
}
