import { defineConfig } from "vitest/config";

export default defineConfig({
  define: { __VERSION__: JSON.stringify("0.0.0-test") },
  test: {
    environment: "happy-dom",
    environmentOptions: {
      happyDOM: {
        url: "https://www.example.com/pricing?utm_source=news",
        // the snippet adds a <script> for cairn.js; the tests import the source instead
        settings: { disableJavaScriptFileLoading: true, handleDisabledFileLoadingAsSuccess: true },
      },
    },
    restoreMocks: true,
  },
});
