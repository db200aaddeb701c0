// simdjson's single-file build (from the @nozbe/simdjson package), compiled as part of this addon.
#include "simdjson.cpp"
