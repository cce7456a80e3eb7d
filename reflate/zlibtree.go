package reflate

// This file predicts a dynamic block's header the way zlib's trees.c (and GNU gzip's, its
// ancestor) builds it: Huffman code lengths from the block's symbol frequencies (build_tree with
// its heap order and gen_bitlen's length limiting), the run-length coding of the lengths
// (scan_tree/send_tree) and the code length code.

const heapSize = 2*288 + 1

type treeBuilder struct {
	freq  [heapSize]int
	dad   [heapSize]int
	lens  [heapSize]int
	depth [heapSize]uint8
	heap  [heapSize]int
	hlen  int
	hmax  int
}

func (tb *treeBuilder) smaller(n, m int) bool {
	return tb.freq[n] < tb.freq[m] || (tb.freq[n] == tb.freq[m] && tb.depth[n] <= tb.depth[m])
}

func (tb *treeBuilder) downheap(k int) {
	v := tb.heap[k]
	j := k << 1
	for j <= tb.hlen {
		if j < tb.hlen && tb.smaller(tb.heap[j+1], tb.heap[j]) {
			j++
		}
		if tb.smaller(v, tb.heap[j]) {
			break
		}
		tb.heap[k] = tb.heap[j]
		k = j
		j <<= 1
	}
	tb.heap[k] = v
}

// build computes code lengths for freq (len(freq) symbols) limited to maxLen bits, and returns
// the lengths and max_code (the highest symbol with a code).
func (tb *treeBuilder) build(freq []int, maxLen int, lens []uint8) int {
	elems := len(freq)
	maxCode := -1
	tb.hlen, tb.hmax = 0, heapSize
	for n := 0; n < elems; n++ {
		tb.freq[n] = freq[n]
		tb.lens[n] = 0
		if freq[n] != 0 {
			tb.hlen++
			tb.heap[tb.hlen] = n
			maxCode = n
			tb.depth[n] = 0
		}
	}
	for tb.hlen < 2 {
		node := 0
		if maxCode < 2 {
			maxCode++
			node = maxCode
		}
		tb.hlen++
		tb.heap[tb.hlen] = node
		tb.freq[node] = 1
		tb.depth[node] = 0
	}
	for n := tb.hlen / 2; n >= 1; n-- {
		tb.downheap(n)
	}
	node := elems
	for {
		n := tb.heap[1]
		tb.heap[1] = tb.heap[tb.hlen]
		tb.hlen--
		tb.downheap(1)
		m := tb.heap[1]
		tb.hmax--
		tb.heap[tb.hmax] = n
		tb.hmax--
		tb.heap[tb.hmax] = m
		tb.freq[node] = tb.freq[n] + tb.freq[m]
		tb.depth[node] = max(tb.depth[n], tb.depth[m]) + 1
		tb.dad[n], tb.dad[m] = node, node
		tb.heap[1] = node
		node++
		tb.downheap(1)
		if tb.hlen < 2 {
			break
		}
	}
	tb.hmax--
	tb.heap[tb.hmax] = tb.heap[1]
	tb.genBitLen(maxCode, maxLen)
	for n := 0; n < elems; n++ {
		lens[n] = uint8(tb.lens[n])
	}
	return maxCode
}

func (tb *treeBuilder) genBitLen(maxCode, maxLen int) {
	var blCount [maxBits + 1]int
	tb.lens[tb.heap[tb.hmax]] = 0
	overflow := 0
	h := tb.hmax + 1
	for ; h < heapSize; h++ {
		n := tb.heap[h]
		bits := tb.lens[tb.dad[n]] + 1
		if bits > maxLen {
			bits = maxLen
			overflow++
		}
		tb.lens[n] = bits
		if n > maxCode {
			continue
		}
		blCount[bits]++
	}
	if overflow == 0 {
		return
	}
	for overflow > 0 {
		bits := maxLen - 1
		for blCount[bits] == 0 {
			bits--
		}
		blCount[bits]--
		blCount[bits+1] += 2
		blCount[maxLen]--
		overflow -= 2
	}
	h = heapSize
	for bits := maxLen; bits != 0; bits-- {
		n := blCount[bits]
		for n != 0 {
			h--
			m := tb.heap[h]
			if m > maxCode {
				continue
			}
			tb.lens[m] = bits
			n--
		}
	}
}

// scanTree runs zlib's run-length coding of lens[0:maxCode+1], calling emit for each code
// length code symbol (with its extra bits value).
func scanTree(lens []uint8, maxCode int, emit func(sym, extra uint8)) {
	prevlen := -1
	nextlen := int(lens[0])
	count := 0
	maxCount, minCount := 7, 4
	if nextlen == 0 {
		maxCount, minCount = 138, 3
	}
	for n := 0; n <= maxCode; n++ {
		curlen := nextlen
		if n+1 <= maxCode {
			nextlen = int(lens[n+1])
		} else {
			nextlen = 0xffff // zlib's guard
		}
		count++
		if count < maxCount && curlen == nextlen {
			continue
		} else if count < minCount {
			for ; count > 0; count-- {
				emit(uint8(curlen), 0)
			}
		} else if curlen != 0 {
			if curlen != prevlen {
				emit(uint8(curlen), 0)
				count--
			}
			emit(16, uint8(count-3))
		} else if count <= 10 {
			emit(17, uint8(count-3))
		} else {
			emit(18, uint8(count-11))
		}
		count = 0
		prevlen = curlen
		if nextlen == 0 {
			maxCount, minCount = 138, 3
		} else if curlen == nextlen {
			maxCount, minCount = 6, 3
		} else {
			maxCount, minCount = 7, 4
		}
	}
}

// zlibHeader predicts the dynamic header zlib writes for a block with these symbol frequencies
// (litFreq includes the end-of-block symbol).
func zlibHeader(tb *treeBuilder, litFreq *[286]int, distFreq *[30]int) *dynHeader {
	h := &dynHeader{}
	var ll [286]uint8
	var dl [30]uint8
	lmax := tb.build(litFreq[:], maxBits, ll[:])
	dmax := tb.build(distFreq[:], maxBits, dl[:])
	var clFreq [numCodeLen]int
	count := func(sym, extra uint8) {
		clFreq[sym]++
		h.seq = append(h.seq, clSym{sym, extra})
	}
	scanTree(ll[:], lmax, count)
	scanTree(dl[:], dmax, count)
	tb.build(clFreq[:], 7, h.clLens[:])
	maxBl := numCodeLen - 1
	for ; maxBl >= 3; maxBl-- {
		if h.clLens[clOrder[maxBl]] != 0 {
			break
		}
	}
	h.hlit, h.hdist, h.hclen = lmax+1, dmax+1, maxBl+1
	copy(h.litLens[:], ll[:h.hlit])
	copy(h.distLens[:], dl[:h.hdist])
	return h
}

func (h *dynHeader) equal(o *dynHeader) bool {
	if h.hlit != o.hlit || h.hdist != o.hdist || h.hclen != o.hclen || h.clLens != o.clLens ||
		h.litLens != o.litLens || h.distLens != o.distLens || len(h.seq) != len(o.seq) {
		return false
	}
	for i := range h.seq {
		if h.seq[i] != o.seq[i] {
			return false
		}
	}
	return true
}

// blockFreqs counts the symbols of a block's tokens, plus one end-of-block.
func blockFreqs(plain []byte, pos int, toks []token, lit *[286]int, dist *[30]int) {
	*lit = [286]int{}
	*dist = [30]int{}
	for _, t := range toks {
		if !t.isMatch() {
			lit[plain[pos]]++
			pos++
			continue
		}
		lit[257+int(lengthCode[t.length])]++
		dist[distCode[t.dist]]++
		pos += int(t.length)
	}
	lit[endBlock]++
}
