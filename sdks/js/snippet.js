!function(){var c=window.cairn=window.cairn||[];if(c.initialized||c.invoked)return;c.invoked=!0;
c.methods=["identify","track","page","screen","group","alias","reset","ready","debug"];
c.factory=function(m){return function(){var a=[].slice.call(arguments),w=window.cairn;
if(w.initialized)return w[m].apply(w,a);a.unshift(m);c.push(a);return c}};
for(var i=0;i<c.methods.length;i++)c[c.methods[i]]=c.factory(c.methods[i]);
c.load=function(k,o){var s=document.createElement("script");s.async=!0;
s.src=o.host+"/static/cairn.js";c._writeKey=k;c._options=o;document.head.appendChild(s)};
c.load("WRITE_KEY",{host:"https://cairn.example.com"});
}();
