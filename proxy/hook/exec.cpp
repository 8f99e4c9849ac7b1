#include "proxy/hook/transport.hpp"
