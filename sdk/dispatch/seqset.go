package dispatch

import (
	"sort"

	"github.com/waybill-iot/waybill/sdk"
)

// seqSet remembers which record sequence numbers of one truck store (one epoch) were delivered, as sorted,
// disjoint, non-adjacent closed ranges. A truck's uploader sends its newest fix first and then the backlog
// oldest first, with a few batches in flight at once, so the numbers arrive as a few growing runs and the
// set stays a handful of ranges. It is bounded: past max ranges, the two lowest ranges are merged, which
// marks the gap between them as seen; a record from that gap arriving later (very late, after max newer
// gaps) would be dropped as a duplicate. That is the price of bounded memory.
type seqSet struct {
	r   [][2]uint64 // sorted by start; r[i][1]+1 < r[i+1][0]
	max int
}

// contains reports whether n was added.
func (s *seqSet) contains(n uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= n })
	return i < len(s.r) && s.r[i][0] <= n
}

// add records n; it reports false if n was already there.
func (s *seqSet) add(n uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= n })
	if i < len(s.r) && s.r[i][0] <= n {
		return false
	}
	joinLeft := i > 0 && s.r[i-1][1]+1 == n
	joinRight := i < len(s.r) && n+1 == s.r[i][0]
	switch {
	case joinLeft && joinRight:
		s.r[i-1][1] = s.r[i][1]
		s.r = append(s.r[:i], s.r[i+1:]...)
	case joinLeft:
		s.r[i-1][1] = n
	case joinRight:
		s.r[i][0] = n
	default:
		s.r = append(s.r, [2]uint64{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = [2]uint64{n, n}
		if s.max > 0 && len(s.r) > s.max {
			s.r[1][0] = s.r[0][0]
			s.r = s.r[1:]
		}
	}
	return true
}

// dedup is the per-truck memory of delivered records: one seqSet per epoch, for the most recent epochs
// (a truck's store gets a new epoch only when it is re-created: rarely).
type dedup struct {
	maxRanges, maxEpochs int
	trucks               map[string][]*epochSet // most recently used epoch first
}

type epochSet struct {
	epoch sdk.Epoch
	set   seqSet
}

func newDedup(maxRanges, maxEpochs int) *dedup {
	return &dedup{maxRanges: maxRanges, maxEpochs: maxEpochs, trucks: map[string][]*epochSet{}}
}

func (d *dedup) set(truck string, e sdk.Epoch, create bool) *seqSet {
	list := d.trucks[truck]
	for i, es := range list {
		if es.epoch == e {
			if i > 0 { // move to front
				copy(list[1:i+1], list[:i])
				list[0] = es
			}
			return &es.set
		}
	}
	if !create {
		return nil
	}
	es := &epochSet{epoch: e, set: seqSet{max: d.maxRanges}}
	list = append([]*epochSet{es}, list...)
	if len(list) > d.maxEpochs {
		list = list[:d.maxEpochs]
	}
	d.trucks[truck] = list
	return &es.set
}

// seen reports whether (truck, epoch, seq) was delivered before.
func (d *dedup) seen(truck string, e sdk.Epoch, seq uint64) bool {
	s := d.set(truck, e, false)
	return s != nil && s.contains(seq)
}

// mark records (truck, epoch, seq) as delivered.
func (d *dedup) mark(truck string, e sdk.Epoch, seq uint64) {
	d.set(truck, e, true).add(seq)
}
