package rehydrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// The step registry. Each recipe op is declared in one op_*.go file, which registers it from
// init: its name (also the feature a recipe must require to use it), its parameters with one
// Validate, where it may stand, how it renders, which blobs it reads, and how it runs. Recipe
// validation, Step.String, BlobsFor, the known features and the engine are derived from it, so
// adding an op touches its file and nothing else here.

// opParams are an op's decoded parameters, from the step's Params or from its fields.
type opParams interface {
	// Validate checks the parameters on their own (the recipe's blob list and refs are checked
	// by Recipe.Validate from blobs and ref).
	Validate() error
}

// noParams are the parameters of an op that has none.
type noParams struct{}

func (noParams) Validate() error { return nil }

func none(*Step) (noParams, error) { return noParams{}, nil }

// opSpec declares one op; P is its parameter type.
type opSpec[P opParams] struct {
	name string
	// source ops start a pipeline and take no input; every other op transforms the output of
	// the step before it.
	source bool
	// randomAccess ops need their input as an io.ReaderAt: the engine spools a stream to a
	// temporary file first (once per pipeline, shared by the artifacts that derive from it).
	randomAccess bool
	// params decodes the parameters from the step (without validating them).
	params func(s *Step) (P, error)
	// str renders the step for humans; nil renders the name alone.
	str func(s *Step) string
	// blobs lists the blobs the step reads; ref names the artifact it reads. nil: none.
	blobs func(p P) []string
	ref   func(p P) string
	// apply runs the step on in (nil for a source). On error it must leave in open: the engine
	// closes it. On success the returned value owns in.
	apply func(c *call, p P, in *value) (*value, error)
}

// op is a registered op with its parameter type erased.
type op struct {
	name         string
	source       bool
	randomAccess bool
	params       func(s *Step) (opParams, error)
	str          func(s *Step) string
	blobs        func(p opParams) []string
	ref          func(p opParams) string
	apply        func(c *call, p opParams, in *value) (*value, error)
}

// call is what an op's apply may use besides its parameters and input.
type call struct {
	ctx   context.Context
	e     *Engine
	depth int               // ref nesting
	side  map[string]*value // blobs read before the source opened (readSide)
}

var ops = map[string]*op{}

// register adds an op to the registry; op files call it from init.
func register[P opParams](s opSpec[P]) {
	if s.name == "" || ops[s.name] != nil || s.params == nil || s.apply == nil {
		panic("rehydrate: bad or duplicate op registration " + s.name)
	}
	o := &op{name: s.name, source: s.source, randomAccess: s.randomAccess, str: s.str}
	o.params = func(st *Step) (opParams, error) { return s.params(st) }
	o.apply = func(c *call, p opParams, in *value) (*value, error) { return s.apply(c, p.(P), in) }
	if s.blobs != nil {
		o.blobs = func(p opParams) []string { return s.blobs(p.(P)) }
	}
	if s.ref != nil {
		o.ref = func(p opParams) string { return s.ref(p.(P)) }
	}
	ops[s.name] = o
}

// features lists the mandatory features this rehydrator implements: the registered ops.
func features() []string {
	out := make([]string, 0, len(ops))
	for name := range ops {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// sources lists the ops that start a pipeline.
func sources() []string {
	var out []string
	for _, name := range features() {
		if ops[name].source {
			out = append(out, name)
		}
	}
	return out
}

// fromJSON decodes Params into a new T. strict refuses unknown fields (and ignores what follows
// the object); otherwise the document must be exactly one JSON value. Which one an op uses is
// part of what its recipes accept, so it does not change.
func fromJSON[T any, PT interface {
	*T
	opParams
}](strict bool) func(s *Step) (PT, error) {
	return func(s *Step) (PT, error) {
		p := PT(new(T))
		if !strict {
			return p, json.Unmarshal(s.Params, p)
		}
		dec := json.NewDecoder(bytes.NewReader(s.Params))
		dec.DisallowUnknownFields()
		return p, dec.Decode(p)
	}
}

// decoded caches a step's validated parameters, with the fields they were decoded from.
type decoded struct {
	from Step // without its cache
	op   *op
	p    opParams
}

func (d *decoded) matches(s *Step) bool {
	f := &d.from
	return f.Op == s.Op && f.Blob == s.Blob && f.Ref == s.Ref && f.Offset == s.Offset &&
		f.Length == s.Length && bytes.Equal(f.Params, s.Params)
}

// decode returns the step's op and validated parameters, from the cache Recipe.Validate fills
// when the step has not changed since, or decoded afresh (and not cached: a step may be shared).
func (s *Step) decode() (*op, opParams, error) {
	if d := s.cache; d != nil && d.matches(s) {
		return d.op, d.p, nil
	}
	o := ops[s.Op]
	if o == nil {
		return nil, nil, fmt.Errorf("%w: op %q (use a newer rehydrator)", ErrUnknownFeature, s.Op)
	}
	p, err := o.decode(s)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRecipe, err)
	}
	return o, p, nil
}

// decode decodes and validates the step's parameters: "OP params: what is wrong" on error.
func (o *op) decode(s *Step) (opParams, error) {
	p, err := o.params(s)
	if err == nil {
		err = p.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%s params: %v", o.name, err)
	}
	return p, nil
}

// remember caches the step's decoded parameters.
func (s *Step) remember(o *op, p opParams) {
	from := *s
	from.cache = nil
	s.cache = &decoded{from: from, op: o, p: p}
}

// pipe runs write in a goroutine from in's stream to the stream of the returned value, which
// owns in: the way a streaming op hands its output on.
func pipe(in *value, key string, size int64, write func(w io.Writer, r io.Reader) error) *value {
	src := in.stream()
	pr, pw := io.Pipe()
	go func() {
		err := write(pw, src)
		src.Close()
		in.close()
		pw.CloseWithError(err)
	}()
	return &value{key: key, r: pr, size: size}
}
