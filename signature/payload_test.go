package signature

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestPayloadFormat(t *testing.T) {
	b, err := Payload{Identity: "quay.io/fedora/fcos-images", Digest: testDigest, Creator: "rehydrator dev", Timestamp: 1764000000}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"critical":{"identity":{"docker-reference":"quay.io/fedora/fcos-images"},"image":{"docker-manifest-digest":"` + testDigest + `"},"type":"cosign container image signature"},"optional":{"creator":"rehydrator dev","timestamp":1764000000}}`
	if string(b) != want {
		t.Fatalf("payload\n%s\nwant\n%s", b, want)
	}
	p, err := ParsePayload(b)
	if err != nil || p.Identity != "quay.io/fedora/fcos-images" || p.Digest != testDigest || p.Creator != "rehydrator dev" || p.Timestamp != 1764000000 {
		t.Fatalf("ParsePayload = %+v, %v", p, err)
	}
	// cosign's own output, with "optional": null.
	p, err = ParsePayload(readTestdata(t, "cosign-payload.json"))
	if err != nil || p.Digest != "sha256:fa93b01658e3a5a1686dc3ae55f170d8de487006fb53a28efcd12ab0710a2e5f" {
		t.Fatalf("cosign payload: %+v, %v", p, err)
	}
}

// TestPayloadStrict: what containers/image refuses, we refuse.
func TestPayloadStrict(t *testing.T) {
	good := `{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"` + testDigest + `"},"type":"cosign container image signature"},"optional":null}`
	if _, err := ParsePayload([]byte(good)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"no optional":          strings.Replace(good, `,"optional":null`, ``, 1),
		"extra top field":      strings.Replace(good, `"optional":null`, `"optional":null,"x":1`, 1),
		"extra critical field": strings.Replace(good, `"type":`, `"extra":1,"type":`, 1),
		"other type":           strings.Replace(good, `cosign container image signature`, `atomic container signature`, 1),
		"bad digest":           strings.Replace(good, testDigest, "sha256:beef", 1),
		"extra image field":    strings.Replace(good, `"docker-manifest-digest"`, `"x":"y","docker-manifest-digest"`, 1),
		"no identity":          strings.Replace(good, `"identity":{"docker-reference":"r/x"},`, ``, 1),
		"fractional timestamp": strings.Replace(good, `"optional":null`, `"optional":{"timestamp":1.5}`, 1),
		"not json":             good[:40],
		"array":                `[]`,
	}
	for name, b := range bad {
		if _, err := ParsePayload([]byte(b)); err == nil {
			t.Errorf("%s: accepted %s", name, b)
		}
	}
}

func TestCheck(t *testing.T) {
	key, _ := GenerateKey()
	other, _ := GenerateKey()
	const otherDigest = "sha256:ffff456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	mine, err := Sign(key, Payload{Identity: "r/x", Digest: testDigest})
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := Sign(other, Payload{Identity: "r/x", Digest: testDigest})
	forOther, _ := Sign(key, Payload{Identity: "r/y", Digest: otherDigest})
	tampered := Signed{Payload: []byte(strings.Replace(string(mine.Payload), "r/x", "r/z", 1)), Signature: mine.Signature}

	if p, err := Check(&key.PublicKey, testDigest, []Signed{theirs, mine}); err != nil || p.Identity != "r/x" {
		t.Fatalf("Check = %+v, %v", p, err)
	}
	cases := []struct {
		name string
		sigs []Signed
		want error
	}{
		{"none", nil, ErrNoSignature},
		{"other key", []Signed{theirs}, ErrUnknownKey},
		{"tampered payload", []Signed{tampered}, ErrUnknownKey},
		{"not base64", []Signed{{Payload: mine.Payload, Signature: "!!"}}, ErrUnknownKey},
		{"other digest", []Signed{theirs, forOther}, ErrOtherDigest},
	}
	for _, c := range cases {
		if _, err := Check(&key.PublicKey, testDigest, c.sigs); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzParsePayload: a payload that parses marshals back to one that parses the same.
func FuzzParsePayload(f *testing.F) {
	good, _ := Payload{Identity: "r/x", Digest: testDigest, Creator: "c", Timestamp: 7}.Marshal()
	f.Add(good)
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"` + testDigest + `"},"type":"cosign container image signature"},"optional":null}`))
	f.Add([]byte(`{"critical":null,"optional":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePayload(data)
		if err != nil {
			return
		}
		if p.Identity == "" {
			return // an empty identity parses but is never written
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatalf("parsed %+v does not marshal: %v", p, err)
		}
		q, err := ParsePayload(b)
		if err != nil || *q != *p {
			t.Fatalf("round trip %+v -> %+v, %v", p, q, err)
		}
	})
}
