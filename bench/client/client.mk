# bench/client/client.mk -- builds the client benchmark's program (bench/client.sh runs it).
#
#   make -f Makefile -f bench/client/client.mk bench-client
#
# Read after the top-level Makefile, whose client variables it reuses: clbench links the
# static libferry and libpq the way the client's end-to-end tests do.

CLBENCH = build/bench-client/clbench

$(CLBENCH): bench/client/clbench.c build/client/libferry.a test/tap.h test/client/e2e_harness.h $(CL_HDRS)
	@mkdir -p $(@D)
	$(CC) $(filter-out -DFERRY_BUILDING_LIBRARY -fvisibility=hidden -fPIC,$(CL_CFLAGS)) -Itest -Itest/client \
		-I$(PG_INCLUDEDIR) -o $@ $< build/client/libferry.a $(CL_LDLIBS) -lpq

.PHONY: bench-client
bench-client: gateway/ferryd $(CLBENCH)
