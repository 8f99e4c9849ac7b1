#pragma once
// The admin endpoint's page (README "Answering by hand"): pending questions with
// Allow / Deny, recent denials and remembered answers, polling the /v1 routes every
// second. One HTML document, its script and style inline (allowed by a per-response
// CSP nonce), nothing loaded from elsewhere.

#include <string>
#include <string_view>

namespace egressd::proxy {

/// The page with `nonce` on its <script> and <style> and `page_token` in a <meta> the
/// script sends back in X-Egressd-Page-Token. `token_required`: admin.token_file is
/// set, so the page asks for the bearer token before its first call. Both strings are
/// hex (never escaped here).
std::string admin_page_html(std::string_view nonce, std::string_view page_token, bool token_required);

}  // namespace egressd::proxy
