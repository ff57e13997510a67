package sdk

import "github.com/fxamacker/cbor/v2"

// The CBOR modes are built once and never change; they hold no state.
var (
	// encMode is RFC 8949 core deterministic encoding: the signer and the receiver of a body or an order hash
	// produce the same bytes for the same values.
	encMode = mustEncMode()
	// decMode is strict about what could hide data or cost memory: no duplicate map keys, no
	// indefinite lengths, no tags, bounded nesting and sizes. Unknown map keys are ignored so bodies can grow.
	decMode = mustDecMode()
)

func mustEncMode() cbor.EncMode {
	opts := cbor.CoreDetEncOptions()
	opts.NilContainers = cbor.NilContainerAsEmpty
	m, err := opts.EncMode()
	if err != nil {
		panic(err) // the options are constants: this is a programming error
	}
	return m
}

func mustDecMode() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 4096,
		MaxMapPairs:      256,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}
